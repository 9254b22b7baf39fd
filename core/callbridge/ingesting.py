"""``callbridge ingest`` and ``callbridge drain``: what they do and what they print.

``ingest`` stores each line of a file as an event (a bad line is refused with its
number and reasons, the others are still stored), then drains (:mod:`callbridge.drain`):
every due delivery is worked, and it waits for deliveries that wait (a rate
limit's room, a backoff) up to ``--wait-max``, with a progress bar saying what
waits and why. For ``ingest`` an accepted write (an app that writes
asynchronously) has ended; ``drain`` also waits for accepted writes to be
confirmed (or retried when they never appeared), up to ``--wait-max``. ``--no-wait`` stores the events and returns at once. Work left
queued is resumed by the next ``ingest`` or ``drain``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import IO, Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from callbridge.console import cell, err, out, say, warn
from callbridge.drain import Drained, drain
from callbridge.drain import Progress as DrainProgress
from callbridge.engine import Engine
from callbridge.reader import Rejected, RejectsFile, read_events
from callbridge.scheduler import Due
from callbridge.settings import Settings

#: What counts as a failure for the exit code (3).
FAILED = ("failed", "dead")


def _describe(due: Due) -> str:
    parts = []
    if due.waiting:
        parts.append("waiting: " + ", ".join(f"{r} {n}" for r, n in sorted(due.waiting.items())))
    if due.parked:
        parts.append("parked: " + ", ".join(f"{r} {n}" for r, n in sorted(due.parked.items())))
    if due.confirming:
        parts.append(f"accepted, to confirm: {due.confirming}")
    return "logging" + (f" ({'; '.join(parts)})" if parts else "")


def _quarantine(ledger: Any, settings: Settings, bad: list[Rejected]) -> None:
    from callbridge.quarantine import Quarantine, Refused

    Quarantine(ledger, settings.quarantine).keep([
        Refused(raw=r.raw, reason=r.reason, origin="ingest", line=r.number, tenant=r.tenant)
        for r in bad])


async def drain_with_progress(engine: Engine, *, event_pks: list[int] | None, total: int,
                              wait_max: float, quiet: bool, sync_tenants: list[str],
                              confirm: bool = False) -> Drained:
    """:func:`callbridge.drain.drain` with a rich progress bar on standard error."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True, disable=quiet) as bar:
        task = bar.add_task("logging", total=total or None)

        def on_due(due: Due) -> None:
            if total:
                bar.update(task, completed=max(0, total - due.open), description=_describe(due))
            else:
                bar.update(task, description=_describe(due))

        def on_warm(tenant: str, app: str, seen: int) -> None:
            if not quiet:
                bar.console.print(f"phone index of {tenant}/{app} is warm ({seen} contacts read)",
                                  markup=False, highlight=False)

        return await drain(engine, event_pks=event_pks, wait_max=wait_max,
                           progress=DrainProgress(on_due=on_due, on_warm=on_warm),
                           sync_tenants=sync_tenants, confirm=confirm)


def _summary(title: str, drained: Drained, as_json: bool, extra: dict[str, Any]) -> None:
    if as_json:
        print(json.dumps({**extra, "still_open": drained.left_open,
                          "next_attempt_at": drained.next_at.isoformat() if drained.next_at else None,
                          "outcomes": [{"app": a, "status": s, "reason": r, "count": n}
                                       for (a, s, r), n in sorted(drained.counts.items())]},
                         indent=2))
        return
    table = Table(title=title)
    for col in ("app", "status", "reason", "events"):
        table.add_column(col)
    for (a, s, r), n in sorted(drained.counts.items()):
        table.add_row(cell(a), cell(s), cell(r), str(n))
    out.print(table)
    if drained.left_open:
        when = f" (next due {drained.next_at:%Y-%m-%d %H:%M:%S} UTC)" if drained.next_at else ""
        say(f"{drained.left_open} delivery(ies) still queued{when}: the next `callbridge ingest` "
            "or `callbridge drain` resumes them.")


async def run_ingest(engine: Engine, settings: Settings, file: Path, stream: IO[bytes], *,
                     rejects: Path | None, dry_run: bool, as_json: bool, wait_max: float,
                     no_wait: bool) -> int:
    """``callbridge ingest``: store the file's events, then drain; the exit code."""
    def region_for(tenant: str) -> str:
        return settings.tenant(tenant).default_region

    bad: list[Rejected] = []
    stored = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err, transient=True, disable=as_json) as bar:
        task = bar.add_task("storing events", total=os.fstat(stream.fileno()).st_size)
        pending = []
        for item in read_events(stream, region_for=region_for):
            bar.advance(task, item.size)
            if isinstance(item, Rejected):
                bad.append(item)
                continue
            pending.append(item.event)
            if len(pending) >= 200:  # one trip to the ledger per chunk; a commit per event
                stored += await engine.ingest_many(pending)
                pending = []
        if pending:
            stored += await engine.ingest_many(pending)
    if bad and not dry_run:
        _quarantine(engine.ledger, settings, bad)
    pks = [s.event_pk for s in stored]
    tenants = sorted({s.event.tenant for s in stored if s.event is not None})
    if no_wait:
        drained = Drained()
        for view in await engine.db(engine.ledger.history, event_pks=pks, limit=10**9):
            drained.counts[(view.app, view.status, view.reason or "")] += 1
            drained.left_open += view.status in ("pending", "waiting")
    else:
        total = len(await engine.db(engine.ledger.history, event_pks=pks, limit=10**9))
        drained = await drain_with_progress(engine, event_pks=pks, total=total, wait_max=wait_max,
                                            quiet=as_json, sync_tenants=tenants)
    target = rejects or file.with_name(file.name + ".rejected")
    kept = RejectsFile(target)
    try:
        with kept:
            for rejected in bad:
                kept.add(rejected)
    except OSError as exc:
        warn(("error:", "red"), f" {target}: cannot be written ({exc.strerror})")
    for rejected in bad:
        warn((f"line {rejected.number}", "yellow"), ": ", rejected.reason)
    if bad:
        warn(f"{len(bad)} bad line(s) kept in {target}, their reasons in {kept.reasons_path}")
    _summary(f"{len(stored)} events from {file.name}", drained, as_json,
             {"events": len(stored), "bad_lines": [b.number for b in bad]})
    return 2 if bad else (3 if drained.count(*FAILED) else 0)


async def run_drain(engine: Engine, *, wait_max: float, as_json: bool) -> int:
    """``callbridge drain``: resume queued work; the exit code."""
    views = await engine.db(engine.ledger.history, limit=10**9)
    # Accepted writes awaiting their confirmation check are queued work too.
    opened = [v for v in views if v.status in ("pending", "waiting")
              or (v.status == "accepted" and v.next_attempt_at is not None)]
    drained = await drain_with_progress(
        engine, event_pks=[v.event_pk for v in opened], total=len(opened), wait_max=wait_max,
        quiet=as_json, sync_tenants=sorted({v.tenant for v in opened}), confirm=True)
    counts: Counter[tuple[str, str, str]] = drained.counts
    _summary(f"{len(opened)} queued deliveries", drained, as_json, {"queued": len(opened)})
    return 3 if sum(n for (_, s, _), n in counts.items() if s in FAILED) else 0
