"""`callbridge --help` starts without loading the host's heavy parts.

Each command's body is imported inside its typer wrapper (see callbridge.cli), so
asking for help, or for any command's help, loads typer and nothing of the engine,
the ledger, SQLAlchemy, an HTTP client or a server. The time it takes is measured
by the benchmarks (``nox -s bench``); here only what is loaded is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys

#: Libraries a plain `--help` must not load (top-level package names).
HEAVY = {"sqlalchemy", "alembic", "psycopg", "httpx2", "httpcore2", "starlette", "uvicorn",
         "phonenumbers", "pluggy", "stevedore", "cryptography"}
#: The host's modules `callbridge --help` may load: the wrappers and what they need.
HOST_ALLOWED = {"callbridge", "callbridge.cli", "callbridge.cli_options", "callbridge.cli_server",
                "callbridge.commands", "callbridge.errors", "callbridge.console"}

PROBE = """
import json, sys
from callbridge.cli import app

def loaded():
    return sorted(sys.modules)

report = {"import": loaded()}
commands = [None] + sorted(c.name or c.callback.__name__.replace("_", "-")
                           for c in app.registered_commands)
for name in commands:
    try:
        app([*([name] if name else []), "--help"], prog_name="callbridge")
    except SystemExit:
        pass
    report[name or "--help"] = loaded()
print(json.dumps(report), file=sys.stderr)
"""


def _loaded_modules() -> dict[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120, check=True)
    report: dict[str, list[str]] = json.loads(done.stderr.strip().splitlines()[-1])
    return report


def test_help_and_every_commands_help_load_nothing_heavy() -> None:
    report = _loaded_modules()
    assert len(report) > 10, "the commands were not found"
    for step, modules in report.items():
        heavy = sorted({m.split(".")[0] for m in modules} & HEAVY)
        assert not heavy, f"`callbridge {step} --help` loads {heavy}"
        host = sorted(m for m in modules if m.split(".")[0] == "callbridge"
                      and m not in HOST_ALLOWED)
        assert not host, (f"`callbridge {step}` loads {host} before the command runs: import "
                          "it inside the command function")


def test_importing_the_cli_loads_neither_pydantic_nor_asyncio() -> None:
    imported = {m.split(".")[0] for m in _loaded_modules()["import"]}
    assert not imported & {"pydantic", "asyncio", "rich", *HEAVY}, sorted(imported)


def test_the_command_modules_still_import_what_they_need() -> None:
    """The bodies' modules import (a name moved away would only show when run)."""
    import importlib

    for name in ("listing", "running", "data", "connect", "tools"):
        module = importlib.import_module(f"callbridge.commands.{name}")
        assert module.__doc__
    from callbridge.commands import WAIT_MAX
    from callbridge.drain import WAIT_MAX as DRAIN_WAIT_MAX

    assert WAIT_MAX == DRAIN_WAIT_MAX
