"""Imports a package that is not installed."""

import callbridge_no_such_dependency  # noqa: F401
