"""The kit's pytest entry point. Kept thin: it loads in every pytest run where
callbridge is installed, so it imports nothing heavy (vcrpy is imported only
when the kit is used)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "callbridge_contract: a test of the callbridge contract kit")
