"""The ``callbridge`` command.

Exit codes scripts can trust: 0 success; 1 an error (a message, never a
traceback); 2 bad input (bad lines in an ingest file, bad settings); 3 some
deliveries failed.

This module holds only the typer wrappers: each command's body lives in
:mod:`callbridge.commands` (or its own module) and is imported inside the
wrapper, so ``callbridge --help`` imports neither the engine, the ledger,
SQLAlchemy nor an HTTP client (``tests/test_cli_startup.py`` guards it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from callbridge.cli_options import ConfigOpt, JsonOpt
from callbridge.cli_server import register as _register_server_commands
from callbridge.commands import WAIT_MAX
from callbridge.commands import runtime as _runtime
from callbridge.errors import CallbridgeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Log a phone system's calls, SMS and faxes into the apps firms use.")



def _version(value: bool) -> None:
    if value:
        from callbridge import HOOK_API_VERSION, __version__
        from callbridge.console import line
        from callbridge.console import out as console

        console.print(line(f"callbridge {__version__} (hook API {HOOK_API_VERSION})"))
        raise typer.Exit()


@app.callback()
def main_options(
    trace: Annotated[bool, typer.Option("--trace", help="print every hook call")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    if trace:
        os.environ["CALLBRIDGE_TRACE"] = "1"


@app.command()
def plugins(
    as_json: JsonOpt = False,
    hook: Annotated[str | None, typer.Option("--hook", help="only plugins implementing this hook")] = None,
    all_: Annotated[bool, typer.Option("--all", help="include load errors in --json output")] = True,
) -> None:
    """Installed plugins: versions, hooks, capabilities, and load errors."""
    from callbridge.commands import listing

    listing.plugins(as_json, hook, all_)


@app.command()
def schema() -> None:
    """Print the JSON Schema of an event (a line of `ingest`), built from the models."""
    from callbridge.commands import tools

    tools.schema()


@app.command()
def keygen() -> None:
    """Print a new encryption key for CALLBRIDGE_SECRET_KEY."""
    from callbridge.commands import tools

    tools.keygen()


WaitMaxOpt = Annotated[float, typer.Option(
    "--wait-max", min=0,
    help="seconds to wait for deliveries that wait (a rate limit, a backoff) before the summary; "
         "what still waits stays queued for the next ingest or drain")]


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(help="JSON lines, one event per line")],
    config: ConfigOpt = None,
    rejects: Annotated[Path | None, typer.Option(help="where bad lines are kept")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="run the pipeline, write nothing")] = False,
    wait_max: WaitMaxOpt = WAIT_MAX,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="store the events and return at once; `callbridge drain` logs them")] = False,
    as_json: JsonOpt = False,
    wait: Annotated[float | None, typer.Option("--wait", hidden=True, min=0,
                                               help="deprecated: --wait-max")] = None,
) -> None:
    """Feed events from a file through every connected app and show the outcomes.

    Waits for deliveries that wait (rate limits, backoffs) up to --wait-max; what is
    left stays queued and is resumed by the next `ingest` or `drain`.
    """
    from callbridge.commands import running

    running.ingest(file, config, rejects, dry_run, wait if wait is not None else wait_max,
                   no_wait, as_json)


@app.command()
def drain(config: ConfigOpt = None, wait_max: WaitMaxOpt = WAIT_MAX,
          as_json: JsonOpt = False) -> None:
    """Resume queued work: log every pending and waiting delivery, waiting up to --wait-max."""
    from callbridge.commands import running

    running.drain(config, wait_max, as_json)


@app.command("sync-closed")
def sync_closed(
    config: ConfigOpt = None,
    tenant: Annotated[str | None, typer.Option("--tenant", help="only this tenant")] = None,
    requeue: Annotated[bool, typer.Option(
        "--requeue", help="queue failed and dead sends again first")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the closed-matter sync once: print what was sent, skipped and why."""
    from callbridge.closing.command import sync_closed as run

    run(config, tenant, requeue, as_json)


@app.command()
def history(
    config: ConfigOpt = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    app_name: Annotated[str | None, typer.Option("--app")] = None,
    status: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option()] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Outcomes per event and app, newest first."""
    from callbridge.commands import listing

    listing.history(config, tenant, app_name, status, limit, as_json)


EventArg = Annotated[str, typer.Argument(
    metavar="EVENT", help="the source's event id, or the ledger's (#N, from `callbridge history`)")]
LogAppOpt = Annotated[str | None, typer.Option("--app", help="the app to log it to")]
ContactOpt = Annotated[str | None, typer.Option(
    "--contact", help="the contact to log it to: one of its candidates, or one the app confirms")]
TenantOpt = Annotated[str | None, typer.Option(help="the firm the event belongs to")]


@app.command("log")
def log_(event: EventArg, app_name: LogAppOpt = None, contact: ContactOpt = None,
         tenant: TenantOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Log an event to an app by hand (resolving an unresolved one with --contact).

    Refused for an app that already has it. Exit code 0 logged, 3 not logged, 4 refused.
    """
    import asyncio

    from callbridge.modes.commands import run_log

    rt = _runtime(config)
    raise typer.Exit(asyncio.run(run_log(rt, event, app_name, contact, tenant, as_json)))


@app.command("resolve")
def resolve(event: EventArg, app_name: LogAppOpt = None, contact: ContactOpt = None,
            tenant: TenantOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The same as `callbridge log` (also takes a delivery id from `callbridge history`)."""
    log_(event, app_name, contact, tenant, config, as_json)


@app.command()
def digest(tenant: TenantOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Run the digest once: match again the calls of the look-back not logged yet."""
    import asyncio

    from callbridge.modes.commands import run_digest_command

    rt = _runtime(config)
    raise typer.Exit(asyncio.run(run_digest_command(rt, tenant, as_json)))


@app.command()
def purge(config: ConfigOpt = None) -> None:
    """Erase event contents past each tenant's retention period (outcomes stay)."""
    from callbridge.commands import data

    data.purge(config)


@app.command()
def erase(
    tenant: Annotated[str, typer.Argument()],
    number: Annotated[str, typer.Argument(help="the person's phone number, in any format")],
    config: ConfigOpt = None,
) -> None:
    """Erase a person's data on request: the contents of the tenant's events with this number."""
    from callbridge.commands import data

    data.erase(tenant, number, config)


@app.command("rotate-key")
def rotate_key_(config: ConfigOpt = None) -> None:
    """Re-encrypt the ledger under CALLBRIDGE_NEW_SECRET_KEY (stop other processes first).

    Resumable: run it again after an interruption. Then set CALLBRIDGE_SECRET_KEY to the new key.
    """
    from callbridge.commands import data

    data.rotate_key(config)


@app.command("quarantine")
def quarantine_(
    config: ConfigOpt = None,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's lines")] = None,
    limit: Annotated[int, typer.Option(help="how many, newest first")] = 100,
    entry: Annotated[int | None, typer.Option(
        help="print one entry's bytes (escaped; with --raw, as they were received)")] = None,
    raw: Annotated[bool, typer.Option("--raw", help="with --entry: the bytes as received")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Input refused at the edge (bad lines of `ingest`), kept encrypted for a while."""
    from callbridge.commands import listing

    listing.quarantine(config, tenant, limit, entry, raw, as_json)


@app.command()
def doctor(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check settings, plugins and credentials; print a redacted diagnostics dump."""
    from callbridge.commands import tools

    tools.doctor(config, as_json)


@app.command()
def auth(
    app_name: Annotated[str, typer.Argument(metavar="APP", help="the tenant's app key, e.g. clio")],
    tenant: Annotated[str, typer.Option(help="the tenant (firm) to connect")],
    redirect_uri: Annotated[str, typer.Option(help="the redirect URI registered with the app")],
    redirect_url: Annotated[str | None, typer.Option(
        help="the URL the browser was sent back to (with ?code=...&state=...)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Connect an OAuth 2.0 app: print the authorise URL, then finish from the redirect URL."""
    from callbridge.commands import connect

    connect.auth(app_name, tenant, redirect_uri, redirect_url, config)


@app.command()
def check(
    tenant: Annotated[str, typer.Argument()],
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    config: ConfigOpt = None,
) -> None:
    """Check one connection: credentials, token refresh and a cheap read from the app."""
    from callbridge.commands import connect

    connect.check(tenant, app_name, config)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sandbox(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the app, e.g. clio")],
    port: Annotated[int, typer.Option()] = 8765,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Run an app's sandbox (an emulator of its API) on loopback; options after the
    name go to the sandbox (e.g. its seeding flags)."""
    from callbridge.commands import tools

    tools.sandbox(name, port, host, list(ctx.args))


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="the app's key in settings, e.g. acme_crm")],
    directory: Annotated[Path | None, typer.Option("--dir", help="where to write it")] = None,
    title: Annotated[str | None, typer.Option(help="the app's name for people")] = None,
) -> None:
    """Write a new plugin package (hooks, sandbox, contract tests, cassettes) that passes
    its tests at once."""
    from callbridge.commands import tools

    tools.new_plugin(name, directory, title)


@app.command()
def demo(name: Annotated[str, typer.Argument(
        help="which demo: an app's name, or 'all' for every installed one")] = "all") -> None:
    """Run a demo, fully offline: an app's sandbox on loopback, a firm, a day of events.

    With no name, every installed app's demo runs in turn (Clio first): each firm's
    day into its own app's sandbox, with a table of what was logged where and why.
    """
    from callbridge.commands import tools

    tools.demo(name)


_register_server_commands(app)  # serve, worker, tenants, operator-token, connect-link


def main() -> None:
    try:
        app()
    except CallbridgeError as exc:  # last resort: a message, not a traceback
        from callbridge.console import warn

        warn(("error:", "red"), " ", str(exc))
        sys.exit(1)
