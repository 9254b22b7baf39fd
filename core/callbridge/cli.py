"""The ``callbridge`` command.

Exit codes scripts can trust: 0 success; 1 an error (a message, never a
traceback); 2 bad input (bad lines in an ingest file, bad settings); 3 some
deliveries failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from callbridge import HOOK_API_VERSION, __version__
from callbridge.console import cell, err, line, warn
from callbridge.console import out as console
from callbridge.drain import WAIT_MAX
from callbridge.errors import CallbridgeError, ConfigError
from callbridge.runtime import Runtime, config_path, load

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Log a phone system's calls, SMS and faxes into the apps firms use.")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="settings file (TOML)",
                                                 envvar="CALLBRIDGE_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]

_state: dict[str, Any] = {}


def _version(value: bool) -> None:
    if value:
        console.print(line(f"callbridge {__version__} (hook API {HOOK_API_VERSION})"))
        raise typer.Exit()


@app.callback()
def main_options(
    trace: Annotated[bool, typer.Option("--trace", help="print every hook call")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    if trace:
        os.environ["CALLBRIDGE_TRACE"] = "1"


def _fail(message: str, code: int = 1) -> typer.Exit:
    warn(("error:", "red"), " ", message)
    return typer.Exit(code)


def _runtime(config: Path | None) -> Runtime:
    try:
        return load(config_path(config))
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    except CallbridgeError as exc:
        raise _fail(str(exc)) from None


@app.command()
def plugins(
    as_json: JsonOpt = False,
    hook: Annotated[str | None, typer.Option("--hook", help="only plugins implementing this hook")] = None,
    all_: Annotated[bool, typer.Option("--all", help="include load errors in --json output")] = True,
) -> None:
    """Installed plugins: versions, hooks, capabilities, and load errors."""
    from callbridge.plugins import discover

    registry = discover(strict=False)
    rows: list[dict[str, Any]] = []
    for p in sorted(registry.plugins.values(), key=lambda p: p.name):
        if hook and hook not in p.implementations:
            continue
        rows.append({
            "name": p.name, "distribution": p.distribution, "version": p.dist_version,
            "hook_api_version": p.declaration.hook_api_version,
            "hooks": p.hooks,
            "capabilities": sorted(c.value for c in p.declaration.capabilities),
            "rate_limits": [b.model_dump() for b in p.declaration.rate_limits],
            "without_contact": sorted(p.declaration.without_contact),
            "deprecations": list(p.deprecations),
        })
    errors = [{"entry_point": e.entry_point, "distribution": e.distribution, "version": e.dist_version,
               "error": e.reason} for e in registry.errors]
    if as_json:
        out: dict[str, Any] = {"plugins": rows}
        if all_:
            out["errors"] = errors
        print(json.dumps(out, indent=2))
        raise typer.Exit(0)
    table = Table(title="callbridge plugins")
    for col in ("name", "distribution", "version", "hooks", "capabilities"):
        table.add_column(col)
    for r in rows:
        table.add_row(cell(r["name"]), cell(r["distribution"]), cell(r["version"]),
                      cell(", ".join(r["hooks"])), cell(", ".join(r["capabilities"])))
    console.print(table)
    for r in rows:  # what the next hook API version removes: the plugin still loads today
        for text in r["deprecations"]:
            warn(("deprecated:", "yellow"), " ", f"{r['name']}: {text}")
    if errors:
        bad = Table(title="failed to load", title_style="red")
        for col in ("entry point", "distribution", "version", "error"):
            bad.add_column(col)
        for e in errors:
            bad.add_row(cell(e["entry_point"]), cell(e["distribution"]), cell(e["version"]),
                        cell(e["error"]))
        console.print(bad)


@app.command()
def schema() -> None:
    """Print the JSON Schema of an event (a line of `ingest`), built from the models."""
    from callbridge.events import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))


@app.command()
def keygen() -> None:
    """Print a new encryption key for CALLBRIDGE_SECRET_KEY."""
    from callbridge.ledger import Ledger

    print(Ledger.generate_key())


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
    from callbridge.ingesting import run_ingest

    if wait is not None:  # 1.x spelling
        wait_max = wait
    rt = _runtime(config)
    try:
        stream = file.open("rb")
    except OSError as exc:
        raise _fail(f"{file}: cannot be read ({exc.strerror})") from None

    async def go() -> int:
        engine = rt.engine(dry_run=dry_run)
        try:
            return await run_ingest(engine, rt.settings.current(), file, stream, rejects=rejects,
                                    dry_run=dry_run, as_json=as_json, wait_max=wait_max,
                                    no_wait=no_wait)
        finally:
            await engine.aclose()

    with stream:
        code = asyncio.run(go())
    raise typer.Exit(code)


@app.command()
def drain(config: ConfigOpt = None, wait_max: WaitMaxOpt = WAIT_MAX,
          as_json: JsonOpt = False) -> None:
    """Resume queued work: log every pending and waiting delivery, waiting up to --wait-max."""
    from callbridge.ingesting import run_drain

    rt = _runtime(config)

    async def go() -> int:
        engine = rt.engine()
        try:
            return await run_drain(engine, wait_max=wait_max, as_json=as_json)
        finally:
            await engine.aclose()

    raise typer.Exit(asyncio.run(go()))


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
    rt = _runtime(config)
    ledger = rt.ledger()
    views = ledger.history(tenant=tenant, app=app_name, status=status, limit=limit)
    if as_json:
        print(json.dumps([{
            "delivery": v.delivery_id, "tenant": v.tenant, "app": v.app, "kind": v.kind,
            "source": v.source, "event": v.masked_id, "status": v.status, "reason": v.reason,
            "message": v.message, "records": [r.model_dump() for r in v.records],
            "attempts": v.attempts, "candidates": [c.id for c in v.candidates],
            "next_attempt_at": v.next_attempt_at if v.status in ("waiting", "parked", "accepted") else None,
        } for v in views], indent=2, default=str))
        return
    table = Table(title="history")
    for col in ("delivery", "tenant", "app", "kind", "event", "status", "reason", "due", "records",
                "message"):
        table.add_column(col)
    for v in views:
        due = (f"{v.next_attempt_at:%Y-%m-%d %H:%M:%S}" if v.next_attempt_at
               and v.status in ("waiting", "parked", "accepted") else "")
        table.add_row(str(v.delivery_id), cell(v.tenant), cell(v.app), cell(v.kind),
                      cell(v.masked_id), cell(v.status), cell(v.reason), cell(due),
                      cell(", ".join(f"{r.kind}:{r.id}" for r in v.records)), cell(v.message))
    console.print(table)


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
    from callbridge.modes.commands import run_log

    rt = _runtime(config)
    raise typer.Exit(asyncio.run(run_log(rt, event, app_name, contact, tenant, as_json)))


@app.command("resolve")
def resolve(event: EventArg, app_name: LogAppOpt = None, contact: ContactOpt = None,
            tenant: TenantOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The same as `callbridge log` (also takes a delivery id from `callbridge history`)."""
    log_(event, app_name, contact, tenant, config, as_json)


@app.command()
def purge(config: ConfigOpt = None) -> None:
    """Erase event contents past each tenant's retention period (outcomes stay)."""
    from callbridge.quarantine import Quarantine

    rt = _runtime(config)
    settings = rt.settings.current()
    retention = {name: t.retention_days for name, t in settings.tenants.items()}
    ledger = rt.ledger()
    n = ledger.purge(retention)
    q = Quarantine(ledger, settings.quarantine).purge(retention)
    console.print(line(f"erased the contents of {n} event(s); dropped {q} quarantined line(s)"))


@app.command()
def erase(
    tenant: Annotated[str, typer.Argument()],
    number: Annotated[str, typer.Argument(help="the person's phone number, in any format")],
    config: ConfigOpt = None,
) -> None:
    """Erase a person's data on request: the contents of the tenant's events with this number."""
    from callbridge.phones import UnreadableNumber, mask_number, search_forms, to_e164
    from callbridge.quarantine import Quarantine

    rt = _runtime(config)
    try:
        region = rt.settings.current().tenant(tenant).default_region
    except KeyError:
        raise _fail(f"no tenant {tenant!r} in the settings", 2) from None
    try:
        e164 = to_e164(number, region)
    except UnreadableNumber as exc:
        raise _fail(f"the number cannot be read ({exc})", 2) from None
    ledger = rt.ledger()
    n = ledger.erase_person(tenant, e164)
    Quarantine(ledger).erase_number(tenant, search_forms(e164))
    console.print(line(f"erased the contents of {n} event(s) of {mask_number(e164)}; "
                       "outcomes stay"))


@app.command("rotate-key")
def rotate_key_(config: ConfigOpt = None) -> None:
    """Re-encrypt the ledger under CALLBRIDGE_NEW_SECRET_KEY (stop other processes first).

    Resumable: run it again after an interruption. Then set CALLBRIDGE_SECRET_KEY to the new key.
    """
    from callbridge.rotation import NEW_KEY_ENV, rotate_key

    rt = _runtime(config)
    try:
        done = rotate_key(rt.ledger().engine)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    console.print(line(f"re-encrypted {done.rewritten} value(s) ({done.already_new} were already "
                       f"under the new key); now set CALLBRIDGE_SECRET_KEY to {NEW_KEY_ENV}'s value"))


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
    from callbridge.console import escaped
    from callbridge.quarantine import Quarantine

    rt = _runtime(config)
    q = Quarantine(rt.ledger(), rt.settings.current().quarantine)
    if entry is not None:
        content = q.content(entry)
        if content is None:
            raise _fail(f"no quarantine entry {entry}")
        if raw:
            sys.stdout.buffer.write(content)
        else:
            print(escaped(content))  # escaped: no control character reaches the terminal
        return
    rows = q.entries(tenant=tenant, limit=limit)
    if as_json:
        print(json.dumps([{"id": e.id, "tenant": e.tenant, "origin": e.origin, "line": e.line,
                           "received_at": e.received_at.isoformat(), "reason": e.reason,
                           "size": e.size, "kept": e.kept} for e in rows], indent=2))
        return
    table = Table(title="quarantine")
    for col in ("id", "received", "origin", "tenant", "line", "bytes", "reason"):
        table.add_column(col)
    for e in rows:
        table.add_row(str(e.id), f"{e.received_at:%Y-%m-%d %H:%M}", cell(e.origin),
                      cell(e.tenant or "(unknown)"), str(e.line or ""), str(e.size), cell(e.reason))
    console.print(table)


@app.command()
def doctor(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Check settings, plugins and credentials; print a redacted diagnostics dump."""
    from callbridge.doctor import diagnose

    report = diagnose(config_path(config))
    if as_json:
        print(json.dumps(report, indent=2, default=str))
    else:
        for check in report["checks"]:
            mark = {"ok": ("ok", "green"), "warn": ("warn", "yellow")}.get(
                check["status"], ("fail", "red"))
            console.print(line(mark, "  ", f"{check['name']}: {check['detail']}"))
    raise typer.Exit(0 if all(c["status"] != "fail" for c in report["checks"]) else 1)


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
    from callbridge import oauth
    from callbridge.connections import Connections
    from callbridge.errors import CallbridgeError

    rt = _runtime(config)
    settings = rt.settings.current()
    try:
        resolved = Connections(rt.registry).resolve(tenant, settings.tenant(tenant), app_name)
    except (CallbridgeError, KeyError) as exc:
        raise _fail(str(exc) if isinstance(exc, CallbridgeError)
                    else f"tenant {tenant!r} has no app {app_name!r} in the settings") from None
    conn = resolved.connection
    if conn.auth != "oauth2" or conn.oauth2 is None:
        raise _fail(f"{app_name} does not use OAuth 2.0; nothing to authorise")
    prefix = resolved.settings.credentials_env
    client_id, client_secret = resolved.credentials.client_id, resolved.credentials.client_secret
    if not client_id or not client_secret:
        raise _fail(f"set {prefix or '<credentials_env>'}_CLIENT_ID and _CLIENT_SECRET first", 2)
    ledger = rt.ledger()
    if redirect_url is None:
        state = oauth.new_state()
        ledger.kv_set(tenant, app_name, "oauth:state", state)
        print(oauth.authorize_url(conn.oauth2, client_id=client_id, redirect_uri=redirect_uri,
                                  state=state))
        err.print("Open this URL, approve, then run this command again with --redirect-url "
                  "set to the address the browser was sent back to.")
        return
    expected = ledger.kv_get(tenant, app_name, "oauth:state")
    if expected is None:
        raise _fail("no authorisation in progress: run without --redirect-url first")
    token = asyncio.run(oauth.exchange_code(
        conn.oauth2, client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri,
        redirect_url_received=redirect_url, expected_state=expected))
    ledger.token_set(tenant, app_name, token)
    ledger.kv_delete(tenant, app_name, "oauth:state")
    # Deliveries parked for re-authorisation (and 1.x failures on authentication) run again now.
    released = ledger.unpark(tenant, app_name, "reauthorise")
    for view in ledger.history(tenant=tenant, app=app_name, status="failed", limit=10**6):
        if view.reason == "authentication_failed":
            ledger.requeue(view.delivery_id, mode=view.mode)
            released += 1
    console.print(line(f"{tenant}/{app_name} connected; {released} delivery(ies) queued again"))


@app.command("operator-token")
def operator_token(
    name: Annotated[str, typer.Argument(help="the operator's name in the settings")],
    tenant: Annotated[list[str] | None, typer.Option(
        "--tenant", help="a tenant the operator may act for (repeat it); none: every tenant")] = None,
) -> None:
    """Make a bearer token for an operator of the operator API: the token on standard
    output, the settings lines that admit it (its hash, never the token) on standard error."""
    from callbridge.serve.auth import token_instructions

    try:
        token, lines = token_instructions(name, tenant or None)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    print(token)
    # Written as is (not through rich, which would wrap the hash): every part was checked.
    sys.stderr.write("Give the token above to the operator (it is not shown again) and add "
                     "these lines to the settings file:\n\n" + lines)


@app.command()
def check(
    tenant: Annotated[str, typer.Argument()],
    app_name: Annotated[str, typer.Argument(metavar="APP")],
    config: ConfigOpt = None,
) -> None:
    """Check one connection: credentials, token refresh and a cheap read from the app."""
    from callbridge.capabilities import Capability
    from callbridge.events import ExternalParty

    rt = _runtime(config)
    engine = rt.engine()

    async def go() -> str:
        try:
            tenant_settings = engine.config.tenant(tenant)
            hooks = engine.hooks_for(tenant_settings, app_name)
            ctx = engine.context(tenant, app_name)
            if hooks.supports(Capability.USERS):
                user = await hooks.pick_default_user(ctx)
                return f"ok: the app answered (default user {'found' if user else 'not found'})"
            if hooks.supports(Capability.CONTACT_SEARCH_PHONE):
                party = ExternalParty.model_validate({"number": "+12125550100"})
                await hooks.find_contact(ctx, party=party)
                return "ok: the app answered a contact search"
            return "ok: settings and credentials present (the plugin offers no cheap read)"
        finally:
            await engine.aclose()

    try:
        console.print(line(asyncio.run(go())))
    except KeyError as exc:
        raise _fail(f"not configured: {exc}", 2) from None
    except CallbridgeError as exc:
        kind = getattr(exc, "code", "error")
        raise _fail(f"{tenant}/{app_name}: {kind}: {exc}") from None


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="address to listen on (default: serve.host)")] = None,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="port (default: serve.port; 0: a free one, printed)")] = None,
    no_worker: Annotated[bool, typer.Option(
        "--no-worker", help="intake only: store events, leave the logging to other processes")] = False,
) -> None:
    """Receive events over HTTP (signed webhooks from phone systems) and log them, with the
    worker and the scheduler in the same process. Stops gracefully on SIGTERM or Ctrl-C."""
    from callbridge.serve import EXTRA_HINT, missing_libraries

    if missing_libraries():
        raise _fail(f"{EXTRA_HINT} (missing: {', '.join(missing_libraries())})")
    from callbridge.serve.server import run

    try:
        code = run(config, host=host, port=port, worker=not no_worker)
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    except OSError as exc:
        raise _fail(f"cannot listen on the address ({exc.strerror})") from None
    raise typer.Exit(code)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sandbox(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the app, e.g. clio")],
    port: Annotated[int, typer.Option()] = 8765,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
) -> None:
    """Run an app's sandbox (an emulator of its API) on loopback; options after the
    name go to the sandbox (e.g. its seeding flags)."""
    import importlib.metadata

    from callbridge.serve import missing_libraries

    if missing_libraries():
        raise _fail(f"a sandbox is a web app: install the serve extra, pip install "
                    f"'callbridge[serve]' (missing: {', '.join(missing_libraries())})")
    import uvicorn

    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="callbridge.sandboxes")}
    if name not in eps:
        raise _fail(f"no sandbox named {name!r}; installed: {', '.join(sorted(eps)) or 'none'}")
    factory = eps[name].load()
    serve = getattr(factory, "serve", None)
    if serve is not None:  # a sandbox that runs itself, with its own options
        raise typer.Exit(int(serve(host=host, port=port, args=list(ctx.args)) or 0))
    console.print(line(f"{name} sandbox on http://{host}:{port}"))
    uvicorn.run(factory(), host=host, port=port, log_level="warning")


@app.command("new-plugin")
def new_plugin(
    name: Annotated[str, typer.Argument(help="the app's key in settings, e.g. acme_crm")],
    directory: Annotated[Path | None, typer.Option("--dir", help="where to write it")] = None,
    title: Annotated[str | None, typer.Option(help="the app's name for people")] = None,
) -> None:
    """Write a new plugin package (hooks, sandbox, contract tests, cassettes) that passes
    its tests at once."""
    from callbridge.scaffold import names_for, render

    dest = directory or Path(names_for(name)["dist"])
    written = render(name, dest, title=title)
    console.print(line(f"wrote {len(written)} files to {dest}; next: cd {dest} && "
                       "pip install -e '.[test]' && python -m pytest"))


@app.command()
def demo(name: Annotated[str, typer.Argument(
        help="which demo: an app's name, or 'all' for every installed one")] = "all") -> None:
    """Run a demo, fully offline: an app's sandbox on loopback, a firm, a day of events.

    With no name, every installed app's demo runs in turn (Clio first): each firm's
    day into its own app's sandbox, with a table of what was logged where and why.
    """
    import importlib.metadata

    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="callbridge.demos")}
    if name == "all" and eps:
        codes = []
        for each in sorted(eps, key=lambda n: (n != "clio", n)):
            console.print(line((f"== the {each} demo", "bold")))
            codes.append(int(eps[each].load()() or 0))
        raise typer.Exit(max(codes))
    if name not in eps:
        raise _fail(f"no demo named {name!r}; installed: {', '.join(sorted(eps)) or 'none'} "
                    "(the Clio demo comes with callbridge-clio)")
    raise typer.Exit(int(eps[name].load()() or 0))


def main() -> None:
    try:
        app()
    except CallbridgeError as exc:  # last resort: a message, not a traceback
        warn(("error:", "red"), " ", str(exc))
        sys.exit(1)
