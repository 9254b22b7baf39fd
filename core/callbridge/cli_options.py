"""Options shared by the ``callbridge`` commands (light: typer and the standard library)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="settings file (TOML)",
                                                 envvar="CALLBRIDGE_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
