"""``callbridge doctor``, ``sandbox``, ``new-plugin``, ``demo``, ``schema`` and ``keygen``."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import typer

from callbridge.commands import fail
from callbridge.console import line
from callbridge.console import out as console


def schema() -> None:
    """Print the JSON Schema of an event (a line of `ingest`), built from the models."""
    from callbridge.events import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))


def keygen() -> None:
    """Print a new encryption key for CALLBRIDGE_SECRET_KEY."""
    from callbridge.ledger import Ledger

    print(Ledger.generate_key())


def doctor(config: Path | None, as_json: bool) -> None:
    """Check settings, plugins and credentials; print a redacted diagnostics dump."""
    from callbridge.doctor import diagnose
    from callbridge.runtime import config_path

    report = diagnose(config_path(config))
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        for check in report["checks"]:
            mark = {"ok": ("ok", "green"), "warn": ("warn", "yellow")}.get(
                check["status"], ("fail", "red"))
            console.print(line(mark, "  ", f"{check['name']}: {check['detail']}"))
    raise typer.Exit(0 if all(c["status"] != "fail" for c in report["checks"]) else 1)


def sandbox(name: str, port: int, host: str, args: list[str]) -> None:
    """Run an app's sandbox (an emulator of its API) on loopback."""
    from callbridge.serve import missing_libraries

    if missing_libraries():
        raise fail(f"a sandbox is a web app: install the serve extra, pip install "
                   f"'callbridge[serve]' (missing: {', '.join(missing_libraries())})")
    import uvicorn

    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="callbridge.sandboxes")}
    if name not in eps:
        raise fail(f"no sandbox named {name!r}; installed: {', '.join(sorted(eps)) or 'none'}")
    factory = eps[name].load()
    serve = getattr(factory, "serve", None)
    if serve is not None:  # a sandbox that runs itself, with its own options
        raise typer.Exit(int(serve(host=host, port=port, args=args) or 0))
    console.print(line(f"{name} sandbox on http://{host}:{port}"))
    uvicorn.run(factory(), host=host, port=port, log_level="warning")


def new_plugin(name: str, directory: Path | None, title: str | None) -> None:
    """Write a new plugin package that passes its tests at once."""
    from callbridge.scaffold import names_for, render

    dest = directory or Path(names_for(name)["dist"])
    written = render(name, dest, title=title)
    console.print(line(f"wrote {len(written)} files to {dest}; next: cd {dest} && "
                       "pip install -e '.[test]' && python -m pytest"))


def demo(name: str) -> None:
    """Run a demo (an app's sandbox, a firm, a day of events), or every installed one."""
    from callbridge.serve import missing_libraries

    if missing_libraries():
        raise fail("a demo runs an app's sandbox, a web app: install the plugin's sandbox extra, "
                   "e.g. pip install 'callbridge-clio[sandbox]' (missing: "
                   f"{', '.join(missing_libraries())})")
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="callbridge.demos")}
    if name == "all" and eps:
        codes = []
        for each in sorted(eps, key=lambda n: (n != "clio", n)):
            console.print(line((f"== the {each} demo", "bold")))
            codes.append(int(eps[each].load()() or 0))
        raise typer.Exit(max(codes))
    if name not in eps:
        raise fail(f"no demo named {name!r}; installed: {', '.join(sorted(eps)) or 'none'} "
                   "(the Clio demo comes with callbridge-clio)")
    raise typer.Exit(int(eps[name].load()() or 0))
