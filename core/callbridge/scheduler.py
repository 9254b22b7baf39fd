"""The scheduler: when work is due. Its timers live in the ledger, so a restart loses none.

The work units (docs/architecture.md lists them once):

* a **delivery** due now (pending, or waiting whose ``next_attempt_at`` has come);
* a **retry wake-up**: the earliest ``next_attempt_at`` of the waiting deliveries
  (a rate limit's room, a backoff, a delayed log);
* a **confirmation check** of accepted writes whose check is due (an accepted
  delivery's ``next_attempt_at``; :mod:`callbridge.confirming`), many deliveries
  of one connection in one ``confirm_accepted`` call;
* an **index sync** of a (tenant, app) whose phone index is older than its
  staleness, run at low priority (``callbridge.ratelimit.priority`` = -1) so it
  gets only the room deliveries leave;
* a **digest** per tenant every ``modes.digest_every_minutes``
  (:mod:`callbridge.modes.digest`): calls of the look-back not logged yet in an
  app with automatic logging on are matched again; its next time is kept in the
  ledger (key-value, per tenant);
* a **closed-matter sync** of a firm whose poll (every ``poll_minutes``) or whose
  send's retry has come (:mod:`callbridge.closing.schedule`): closed matters read
  from the source, each client sent once to the destination;
* an **app-events renewal**: a (tenant, app) whose app sends events and has no
  subscription kept, or one due for renewal (its time kept with it in the
  ledger; :mod:`callbridge.appevents`), subscribed or renewed.

:class:`Scheduler` is the interface; :class:`InProcessScheduler` runs the units in
this process on the engine's clock. A task-queue implementation for many
workers comes later behind the same interface.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from callbridge.capabilities import Capability
from callbridge.closing import schedule as closing_schedule
from callbridge.ratelimit import priority

if TYPE_CHECKING:
    from callbridge.engine import Engine

log = logging.getLogger("callbridge.scheduler")

#: A phone index synced longer ago than this is caught up (seconds).
INDEX_STALE_AFTER = 300.0
#: When idle, stale indexes are looked for this often (seconds); at most this many are
#: synced per look, this many at once.
INDEX_CHECK_EVERY = 5.0
INDEX_SYNCS_PER_PASS = 8
INDEX_SYNCS_AT_ONCE = 4
#: How often (seconds) idle tenants' clients, caches and slots are let go.
EVICT_EVERY = 60.0
#: Deliveries still open (pending, waiting).
OPEN = ("pending", "waiting")


@dataclass(frozen=True)
class Due:
    """What is open among some deliveries, and when the next of them is due."""

    open: int
    next_at: datetime | None
    waiting: dict[str, int]  # reason -> count, for progress displays
    parked: dict[str, int]
    #: Accepted deliveries awaiting a confirmation check (counted when asked for).
    confirming: int = 0


class Scheduler(Protocol):
    """When work is due: deliveries, retry wake-ups and index syncs."""

    async def due(self, event_pks: Sequence[int] | None = None, *,
                  confirming: bool = False) -> Due: ...
    async def wait_for_due(self, until: datetime, event_pks: Sequence[int] | None = None, *,
                           confirming: bool = False) -> None: ...
    async def sync_indexes(self, *, stale_after: float = 0) -> int: ...


class InProcessScheduler:
    """The :class:`Scheduler` of one process; the timers are the ledger's rows."""

    def __init__(self, engine: Engine, *, poll: float = 0.25) -> None:
        self.engine = engine
        self.poll = poll
        self._digests: Any = None
        self._woken = asyncio.Event()
        self._evicted_at = engine.clock.monotonic()
        self._indexes_at = float("-inf")

    def wake(self) -> None:
        """Work was queued outside the worker (a delivery re-queued or released by an
        operator, an app reconnected): look for due work now, not at the next known due
        time. Call it from the loop :meth:`run` runs on."""
        self._woken.set()

    async def due(self, event_pks: Sequence[int] | None = None, *,
                  confirming: bool = False) -> Due:
        """Open deliveries (of these events), the next due time, waiting and parked counts.

        With ``confirming``, accepted deliveries awaiting a confirmation check count
        as open, and their checks as due times.
        """
        engine = self.engine
        rows = await engine.db(engine.ledger.due_summary, event_pks=event_pks)
        opened = checks = 0
        times: list[datetime] = []
        pending_now = False
        waiting: dict[str, int] = {}
        parked: dict[str, int] = {}
        for status, reason, count, timed, first in rows:
            if status == "accepted":  # a confirmation check is due at its next attempt time
                if confirming and timed:
                    checks += timed
                    opened += timed
                    if first is not None:
                        times.append(first)
                continue
            if status in OPEN:
                # A delayed log held until its call ends waits for a revision, not for time.
                opened += timed if reason == "delay" and status == "waiting" else count
                pending_now = pending_now or status == "pending"
                if status == "waiting" and first is not None:
                    times.append(first)
            counts = waiting if status == "waiting" else parked if status == "parked" else None
            if counts is not None:
                counts[reason or "?"] = counts.get(reason or "?", 0) + count
        next_at = engine.clock.now() if pending_now else (min(times) if times else None)
        return Due(open=opened, next_at=next_at, waiting=waiting, parked=parked, confirming=checks)

    async def wait_for_due(self, until: datetime, event_pks: Sequence[int] | None = None, *,
                           confirming: bool = False) -> None:
        """Sleep (on the engine's clock) until the next waiting delivery is due, or ``until``."""
        clock = self.engine.clock
        due = await self.due(event_pks, confirming=confirming)
        now = clock.now()
        target = until if due.next_at is None else min(until, due.next_at)
        # Pending deliveries another process holds: look again soon.
        seconds = max((target - now).total_seconds(), self.poll if due.next_at is None
                      or due.next_at <= now else 0.0)
        await clock.sleep(seconds)

    async def sync_indexes(self, *, stale_after: float = 0,
                           tenants: Sequence[str] | None = None,
                           limit: int | None = None) -> int:
        """Catch up the phone indexes last synced more than ``stale_after`` s ago (the
        ``limit`` longest unsynced of them, a few at once), at low priority; return how
        many contacts were seen."""
        token = priority.set(-1)
        try:
            return await self._sync(stale_after, tenants, limit)
        finally:
            priority.reset(token)

    async def _sync(self, stale_after: float, tenants: Sequence[str] | None,
                    limit: int | None) -> int:
        engine = self.engine
        now = engine.clock.now()
        synced = await engine.db(engine.ledger.index_sync_times)  # one read for every index
        stale: list[tuple[float, str, str, Any]] = []
        for tenant_id, tenant in engine.config.tenants.items():
            if tenants is not None and tenant_id not in tenants:
                continue
            for app in engine.apps_for(tenant, automatic=False):
                hooks = engine.hooks_for(tenant, app)
                if not hooks.supports(Capability.CONTACTS_CHANGED):
                    continue
                at = synced.get((tenant_id, app))
                age = float("inf") if at is None else (now - at).total_seconds()
                if at is None or age >= stale_after:
                    stale.append((age, tenant_id, app, hooks))
        stale.sort(key=lambda item: -item[0])  # the longest unsynced first
        chosen = stale if limit is None else stale[:limit]
        seen = 0
        for start in range(0, len(chosen), INDEX_SYNCS_AT_ONCE):
            group = chosen[start:start + INDEX_SYNCS_AT_ONCE]
            results = await asyncio.gather(*(self._sync_one(tenant_id, app, hooks)
                                             for _, tenant_id, app, hooks in group))
            seen += sum(results)
        return seen

    async def _sync_one(self, tenant_id: str, app: str, hooks: Any) -> int:
        engine = self.engine
        try:
            return await engine.index.sync(engine.context(tenant_id, app), hooks)
        except Exception as exc:
            log.warning("phone index sync %s/%s failed: %s", tenant_id, app, type(exc).__name__)
            return 0

    async def digests(self) -> int:
        """Run each tenant's digest whose time has come; return how many delivered work."""
        from callbridge.modes.digest import DigestTimer, run_due

        if self._digests is None:
            self._digests = DigestTimer()
        reports = await run_due(self.engine, self.engine.clock.now(), self._digests)
        return sum(1 for r in reports if r.requeued or r.added)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set: deliveries as they fall due, stale indexes when idle."""
        engine = self.engine
        while not stop.is_set():
            worked = await engine.worker.run_until_idle(stop=stop)
            worked += await engine.confirmer.run_due()
            await closing_schedule.run_due(engine)
            worked += await engine.app_events.run_due()
            if worked:
                continue
            if engine.clock.monotonic() - self._indexes_at >= INDEX_CHECK_EVERY:
                # A few stale indexes per idle pass, so new deliveries never wait behind
                # the syncs of many tenants.
                self._indexes_at = engine.clock.monotonic()
                await self.sync_indexes(stale_after=INDEX_STALE_AFTER, limit=INDEX_SYNCS_PER_PASS)
            if engine.clock.monotonic() - self._evicted_at > EVICT_EVERY:
                self._evicted_at = engine.clock.monotonic()
                await engine.evict_idle()
            if await self.digests():
                continue
            due = await self.due(confirming=True)
            now = engine.clock.now()
            wait = self.poll if due.next_at is None else (due.next_at - now).total_seconds()
            # Nothing was worked: what is due now is held by another process; look again soon.
            sleeper = asyncio.ensure_future(engine.clock.sleep(max(self.poll, min(wait, 60.0))))
            stopper = asyncio.ensure_future(stop.wait())
            waker = asyncio.ensure_future(self._woken.wait())
            await asyncio.wait({sleeper, stopper, waker}, return_when=asyncio.FIRST_COMPLETED)
            self._woken.clear()
            for task in (sleeper, stopper, waker):
                task.cancel()
