"""``callbridge sync-closed``: run every firm's closed-matter sync once and say what happened.

Prints, per firm, what was sent, skipped and why (opted out, not opted in, no
trigger), held by a configuration error, or left waiting, failed or dead. Exit
code 0; 1 when a firm has a configuration error or a send failed or died.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from callbridge.closing.report import FirmReport, text
from callbridge.closing.sync import firm_settings, sync_firm
from callbridge.commands import runtime
from callbridge.console import line
from callbridge.console import out as console

if TYPE_CHECKING:
    from callbridge.engine import Engine


async def run_sync_closed(engine: Engine, *, tenant: str | None = None, as_json: bool = False,
                          requeue: bool = False) -> int:
    """The command's body; its exit code."""
    tenants = [tenant] if tenant else sorted(engine.config.tenants)
    reports: list[FirmReport] = []
    for tenant_id in tenants:
        if firm_settings(engine, tenant_id) is None:
            if tenant:
                console.print(line(f"{tenant_id}: no closed-matter sync is set up "
                                   "([tenants.<id>.closed_matters])"))
                return 1
            continue
        reports.append(await sync_firm(engine, tenant_id, requeue_failed=requeue))
    if as_json:
        console.print_json(json.dumps([r.as_json() for r in reports]))
    else:
        if not reports:
            console.print(line("no tenant has a closed-matter sync set up"))
        for text_line in text(reports):
            console.print(line(text_line))
    bad = any(r.problems or any(x.fate in ("failed", "dead") for x in r.lines) for r in reports)
    return 1 if bad else 0


def sync_closed(config: Path | None, tenant: str | None, requeue: bool, as_json: bool) -> None:
    """The command: one run of every firm's sync (or one firm's), then its exit code."""
    rt = runtime(config)

    async def go() -> int:
        engine = rt.engine()
        try:
            return await run_sync_closed(engine, tenant=tenant, as_json=as_json,
                                         requeue=requeue)
        finally:
            await engine.aclose()

    raise typer.Exit(asyncio.run(go()))
