"""Working queued deliveries to an end, for ``callbridge ingest`` and ``callbridge drain``.

:func:`drain` works every due delivery (its own events' and any queued before),
then sleeps on the engine's clock until the next waiting one is due (a rate
limit's room, a backoff), and stops when every delivery it watches has ended or
is parked, or waits beyond ``wait_max`` seconds from the start. Accepted writes
(an app that writes asynchronously) whose confirmation check is due are checked
on the way (:mod:`callbridge.confirming`); with ``confirm=True`` (``callbridge
drain``) an accepted delivery counts as open until its check has settled it,
else (``callbridge ingest``) accepted counts as ended. What is left
stays queued in the ledger: the next ``ingest`` or ``drain`` (or ``serve``)
resumes it. Meanwhile the phone indexes of the tenants concerned are synced at
low priority, getting only the room the deliveries leave.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from callbridge.capabilities import Capability
from callbridge.scheduler import Due

if TYPE_CHECKING:
    from callbridge.engine import Engine

log = logging.getLogger("callbridge.drain")

#: The default of ``--wait-max``: how long ``ingest`` waits for waiting deliveries.
WAIT_MAX = 600.0


@dataclass
class Drained:
    """What :func:`drain` left: outcomes per (app, status, reason), and what still waits."""

    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    worked: int = 0
    confirmed: int = 0  # accepted deliveries settled by a confirmation check
    left_open: int = 0
    next_at: datetime | None = None
    warm: list[tuple[str, str, int]] = field(default_factory=list)  # (tenant, app, contacts)

    def count(self, *statuses: str) -> int:
        return sum(n for (_, s, _), n in self.counts.items() if s in statuses)


@dataclass
class Progress:
    """Callbacks a display gives :func:`drain`; all optional."""

    on_due: Callable[[Due], None] | None = None
    on_warm: Callable[[str, str, int], None] | None = None


def _indexed(engine: Engine, tenants: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for tenant_id in tenants:
        tenant = engine.config.tenants.get(tenant_id)
        if tenant is None:
            continue
        for app in engine.apps_for(tenant, automatic=False):
            if engine.hooks_for(tenant, app).supports(Capability.CONTACTS_CHANGED):
                out.append((tenant_id, app))
    return out


async def _sync(engine: Engine, pairs: list[tuple[str, str]], drained: Drained,
                progress: Progress, stale_after: float) -> None:
    from callbridge.ratelimit import priority

    priority.set(-1)  # this task only: the room deliveries leave
    for tenant_id, app in pairs:
        _, synced_at = await engine.db(engine.ledger.index_state, tenant_id, app)
        if synced_at is not None and (engine.clock.now() - synced_at).total_seconds() < stale_after:
            continue
        hooks = engine.hooks_for(engine.config.tenant(tenant_id), app)
        try:
            seen = await engine.index.sync(engine.context(tenant_id, app), hooks)
        except Exception as exc:
            log.warning("phone index sync %s/%s failed: %s", tenant_id, app, type(exc).__name__)
            continue
        drained.warm.append((tenant_id, app, seen))
        if progress.on_warm is not None:
            progress.on_warm(tenant_id, app, seen)


async def drain(engine: Engine, *, event_pks: Sequence[int] | None = None,
                wait_max: float = WAIT_MAX, progress: Progress | None = None,
                sync_tenants: Sequence[str] = (), index_stale_after: float = 300.0,
                confirm: bool = False) -> Drained:
    """Work deliveries until those watched (of ``event_pks``, else all) have ended or
    are parked, or wait beyond ``wait_max`` seconds; see the module docstring."""
    progress = progress or Progress()
    drained = Drained()
    clock = engine.clock
    horizon = clock.now() + timedelta(seconds=wait_max)
    pairs = _indexed(engine, sync_tenants)
    syncing = (asyncio.create_task(_sync(engine, pairs, drained, progress, index_stale_after))
               if pairs else None)
    try:
        while True:
            drained.worked += await engine.worker.run_until_idle()
            drained.confirmed += await engine.confirmer.run_due()
            due = await engine.scheduler.due(event_pks, confirming=confirm)
            if progress.on_due is not None:
                progress.on_due(due)
            drained.left_open, drained.next_at = due.open, due.next_at
            if due.open == 0 or clock.now() >= horizon:
                break
            if due.next_at is not None and due.next_at > horizon:
                break
            await engine.scheduler.wait_for_due(horizon, event_pks, confirming=confirm)
        if syncing is not None:
            # The deliveries are done: the sync may have the whole limit now, until the horizon.
            left = (horizon - clock.now()).total_seconds()
            if left > 0:
                sleeper = asyncio.ensure_future(clock.sleep(left))
                await asyncio.wait({syncing, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
    finally:
        if syncing is not None and not syncing.done():
            syncing.cancel()
            await asyncio.gather(syncing, return_exceptions=True)
    views = await engine.db(engine.ledger.history, event_pks=event_pks, limit=10**9)
    for view in views:
        drained.counts[(view.app, view.status, view.reason or "")] += 1
    return drained
