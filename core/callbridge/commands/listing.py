"""``callbridge plugins``, ``history`` and ``quarantine``: tables of what is there."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from callbridge.commands import fail, runtime
from callbridge.console import cell, warn
from callbridge.console import out as console


def plugins(as_json: bool, hook: str | None, all_: bool) -> None:
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


def history(config: Path | None, tenant: str | None, app_name: str | None, status: str | None,
            limit: int, as_json: bool) -> None:
    """Outcomes per event and app, newest first."""
    rt = runtime(config)
    ledger = rt.ledger()
    views = ledger.history(tenant=tenant, app=app_name, status=status, limit=limit)
    if as_json:
        print(json.dumps([{
            "delivery": v.delivery_id, "tenant": v.tenant, "app": v.app, "kind": v.kind,
            "source": v.source, "event": v.masked_id, "ledger_event": f"#{v.event_pk}",
            "mode": v.mode, "status": v.status, "reason": v.reason,
            "message": v.message, "records": [r.model_dump() for r in v.records],
            "attempts": v.attempts, "candidates": [c.id for c in v.candidates],
            "next_attempt_at": v.next_attempt_at if v.status in ("waiting", "parked", "accepted") else None,
        } for v in views], indent=2, default=str))
        return
    table = Table(title="history")
    for col in ("delivery", "tenant", "app", "kind", "event", "#", "mode", "status", "reason",
                "due", "records", "message"):
        table.add_column(col)
    for v in views:
        due = (f"{v.next_attempt_at:%Y-%m-%d %H:%M:%S}" if v.next_attempt_at
               and v.status in ("waiting", "parked", "accepted") else "")
        table.add_row(str(v.delivery_id), cell(v.tenant), cell(v.app), cell(v.kind),
                      cell(v.masked_id), f"#{v.event_pk}", cell(v.mode), cell(v.status),
                      cell(v.reason), cell(due),
                      cell(", ".join(f"{r.kind}:{r.id}" for r in v.records)), cell(v.message))
    console.print(table)


def quarantine(config: Path | None, tenant: str | None, limit: int, entry: int | None, raw: bool,
               as_json: bool) -> None:
    """Input refused at the edge (bad lines of `ingest`), kept encrypted for a while."""
    from callbridge.console import escaped
    from callbridge.quarantine import Quarantine

    rt = runtime(config)
    q = Quarantine(rt.ledger(), rt.settings.current().quarantine)
    if entry is not None:
        content = q.content(entry)
        if content is None:
            raise fail(f"no quarantine entry {entry}")
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
