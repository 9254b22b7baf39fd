"""`callbridge --help` and `callbridge plugins` start without loading the host's heavy parts.

Each command's body is imported inside its typer wrapper (see callbridge.cli), so
asking for help, or for any command's help, loads typer and nothing of the engine,
the ledger, SQLAlchemy, an HTTP client or a server. `callbridge plugins` loads each
plugin and prints its declaration: the plugins import what their hooks need when a
hook is first called, and the hook specs read their return types on first use, so
listing loads neither the HTTP client nor the host's event models. The time it takes
is measured by the benchmarks (``nox -s bench``); here only what is loaded is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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


#: The app plugins shipped beside the host (each in its own distribution).
APP_PLUGINS = ("clio", "hubspot", "smokeball", "webhook_out")
#: What `callbridge plugins` may load of the host besides the CLI: the loader, the specs,
#: the declaration's models.
PLUGINS_ALLOWED = HOST_ALLOWED | {"callbridge.commands.listing", "callbridge.plugins",
                                  "callbridge.hookspecs", "callbridge.capabilities",
                                  "callbridge.buckets", "callbridge.results"}
#: Libraries `callbridge plugins` must not load: the help's list (but the plugin manager
#: and the entry points' loader, which it needs) and the event loop.
PLUGINS_HEAVY = (HEAVY - {"pluggy", "stevedore"}) | {"asyncio", "authlib", "tenacity", "anyio"}

LISTING_PROBE = """
import json, sys
from callbridge.cli import app

try:
    app(["plugins", "--json", "--all"], prog_name="callbridge")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _listing(env: dict[str, str]) -> tuple[dict[str, list[dict[str, object]]], list[str]]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("CALLBRIDGE_PLUGINS", "CALLBRIDGE_DISABLE_PLUGINS")}
    done = subprocess.run([sys.executable, "-c", LISTING_PROBE], capture_output=True, text=True,
                          timeout=120, check=True, env={**base, **env})
    modules: list[str] = json.loads(done.stderr.strip().splitlines()[-1])
    return json.loads(done.stdout), modules


def _installed(*names: str) -> bool:
    from importlib.metadata import entry_points

    return set(names) <= {ep.name for ep in entry_points(group="callbridge.plugins")}


@pytest.mark.skipif(not _installed(*APP_PLUGINS), reason="the app plugins are not installed")
@pytest.mark.parametrize("env", [
    {"CALLBRIDGE_PLUGINS": ",".join(APP_PLUGINS)},
    {"CALLBRIDGE_DISABLE_PLUGINS": "notebook,broken_import,broken_misspelt"},
], ids=["allow-list", "deny-list"])
def test_listing_the_app_plugins_loads_neither_their_http_client_nor_the_event_models(
        env: dict[str, str]) -> None:
    listing, modules = _listing(env)
    assert [p["name"] for p in listing["plugins"]] == list(APP_PLUGINS)
    assert listing["errors"] == []
    assert all(p["capabilities"] and p["hooks"] for p in listing["plugins"])
    heavy = sorted({m.split(".")[0] for m in modules} & PLUGINS_HEAVY)
    assert not heavy, f"`callbridge plugins` loads {heavy}"
    host = sorted(m for m in modules if m.split(".")[0] == "callbridge" and m not in PLUGINS_ALLOWED)
    assert not host, (f"`callbridge plugins` loads {host}: import them where a hook or a "
                      "command first needs them")
    left_out = sorted(m for m in modules if m.startswith(("callbridge.examples", "callbridge_broken")))
    assert not left_out, f"a plugin left out by the lists is imported: {left_out}"


def test_the_hook_specs_read_their_return_types_on_first_use() -> None:
    """The specs' table still names the host's models (the loader checks results with it)."""
    from callbridge import hookspecs
    from callbridge.models import LogResult

    assert hookspecs.SPECS["log_call"].returns is LogResult
    assert tuple(hookspecs.SPECS) == hookspecs.ROUTED_HOOKS
    assert hookspecs.hooks_needing(hookspecs.Capability.CALLS) == frozenset({"log_call"})


#: The host's modules a plugin written like the notebook example imports at load: the
#: context and the models it names. Each must stay cheap to import.
PLUGIN_API = {"callbridge.context", "callbridge.models", "callbridge.apprequests",
              "callbridge.events", "callbridge.eventtext", "callbridge.revisions",
              "callbridge.phones", "callbridge.clock"}


@pytest.mark.skipif(not _installed("notebook"), reason="the notebook example is not installed")
def test_a_plugin_importing_the_context_and_models_loads_no_heavy_library() -> None:
    """The notebook example imports the hook context and the models at load, as most
    plugins do: those modules load neither the HTTP client, the event loop nor the phone
    numbers' library (each is imported where it is used)."""
    listing, modules = _listing({"CALLBRIDGE_PLUGINS": "notebook"})
    assert [p["name"] for p in listing["plugins"]] == ["notebook"]
    assert "callbridge.context" in modules
    heavy = sorted({m.split(".")[0] for m in modules} & PLUGINS_HEAVY)
    assert not heavy, f"importing the plugin API loads {heavy}"
    host = sorted(m for m in modules if m.split(".")[0] == "callbridge"
                  and m not in PLUGINS_ALLOWED | PLUGIN_API and not m.startswith("callbridge.examples"))
    assert not host, f"importing the plugin API loads {host}"
