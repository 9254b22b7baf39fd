"""callbridge: log a phone system's calls, SMS and faxes into the apps firms use.

The host defines the hooks (:mod:`callbridge.hookspecs`), loads each app's plugin
by entry point (:mod:`callbridge.plugins`), and runs every event through one
pipeline per connected app (:mod:`callbridge.pipeline`).
"""

from __future__ import annotations

#: The hook API this host implements. A plugin declares the version it was built
#: for; the host accepts it when the major numbers are equal and the plugin's
#: minor is not above the host's, and loads a plugin built for the previous major
#: with a deprecation warning (see the migration guide, migrating-to-2.0).
HOOK_API_VERSION = "2.1"

__all__ = ["HOOK_API_VERSION", "__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed distribution on first use (reading package
    metadata costs start-up time that ``callbridge --help`` need not pay)."""
    if name != "__version__":
        raise AttributeError(f"module 'callbridge' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("callbridge")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        found = "0.0.0"
    globals()["__version__"] = found
    return found

