"""The bodies of the ``callbridge`` commands.

:mod:`callbridge.cli` holds only the typer wrappers (names, options, help) and
imports nothing heavy, so ``callbridge --help`` answers at once; each wrapper
imports its command's module from here when it runs. A command's module imports
what it needs (the engine, the ledger, SQLAlchemy...) at its top.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from callbridge.runtime import Runtime

#: Seconds ``ingest`` and ``drain`` wait for waiting deliveries by default
#: (:data:`callbridge.drain.WAIT_MAX`; repeated here so the CLI need not import it).
WAIT_MAX = 600.0


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``error: message`` on standard error; the exit to raise."""
    from callbridge.console import warn

    warn(("error:", "red"), " ", message)
    return typer.Exit(code)


def runtime(config: Path | None) -> Runtime:
    """The host's parts built from the settings file, or an exit with a clear message."""
    from callbridge.errors import CallbridgeError, ConfigError
    from callbridge.runtime import config_path, load

    try:
        return load(config_path(config))
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    except CallbridgeError as exc:
        raise fail(str(exc)) from None
