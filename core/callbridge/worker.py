"""The worker: claim due deliveries, keep their leases, run the pipeline, finish.

A delivery is claimed under a lease with a fencing token, renewed while the
work runs (:mod:`callbridge.leases`), so two processes never send it at once and
a crashed process's claim expires (docs/ledger.md). Each connection (tenant,
app) runs only as many deliveries at once as its rate-limit buckets can serve; a delivery that
has begun writing raises its priority (``callbridge.ratelimit.priority``) so
its remaining writes go before new lookups. An attempt's exception becomes an
outcome (:mod:`callbridge.outcomes`): a rate limit makes the delivery wait,
keeping its attempt count.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from callbridge.batching import Batcher
from callbridge.capabilities import Capability
from callbridge.errors import ConfigError
from callbridge.leases import Leases
from callbridge.ledger import Claim, LeaseLost
from callbridge.models import Outcome, OutcomeStatus
from callbridge.modes.automatic import Reauthorisation
from callbridge.outcomes import outcome_for_error
from callbridge.pipeline import Job, run
from callbridge.ratelimit import priority
from callbridge.services import LedgerDelivery

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.settings import Settings

log = logging.getLogger("callbridge.worker")

#: Seconds one delivery's request may take: a connection runs as many deliveries at
#: once as its slowest bucket serves requests in this time (at least two).
REQUEST_SECONDS = 2.0


class Worker:
    """Claims and works deliveries for one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}
        #: The leases of the deliveries being worked, renewed while their work runs.
        self.leases = Leases(engine)
        #: Deliveries being worked now, per (tenant, app): for progress displays.
        self.running: dict[tuple[str, str], int] = {}
        #: The batch work unit, for apps that declare ``batch_writes``.
        self.batcher = Batcher(engine.clock)
        #: Connections refused for their credentials: parked without a request.
        self.reauthorisation = Reauthorisation(engine)
        #: Called with (claim, outcome) after each outcome is recorded (the server's
        #: metrics); keep them quick, they must not raise.
        self.finished: list[Callable[[Claim, Outcome], None]] = []

    def close(self) -> None:
        self.leases.close()

    @property
    def capacity(self) -> int:
        """Deliveries in flight at once: ``concurrency``, or a batch's size where larger."""
        sizes = [p.declaration.batch_size for p in self.engine.registry.plugins.values()
                 if Capability.BATCH_WRITES in p.declaration.capabilities]
        return max([self.engine.concurrency, *sizes])

    def slots_for(self, tenant: str, app: str) -> int:
        """How many deliveries of this connection may run at once."""
        engine = self.engine
        try:
            plugin = engine.hooks_for(engine.config.tenant(tenant), app).plugin
        except KeyError:
            return engine.concurrency
        declaration = plugin.declaration
        rates = [b.requests / b.per_seconds for b in declaration.rate_limits
                 if b.requests is not None and b.per_seconds]
        if not rates:
            return engine.concurrency
        slots = max(2, min(engine.concurrency, math.ceil(min(rates) * REQUEST_SECONDS)))
        if Capability.BATCH_WRITES in declaration.capabilities:
            # A batch fills only with as many deliveries at once as it holds.
            slots = max(slots, min(self.capacity, declaration.batch_size))
        return slots

    def forget(self, pairs: Collection[tuple[str, str]], tenants: Collection[str]) -> None:
        """Drop the slots of idle (tenant, app)s and of ``tenants`` (none is in use)."""
        for key in [k for k in self._slots if (k in pairs or k[0] in tenants)
                    and not self.running.get(k)]:
            del self._slots[key]
            self.running.pop(key, None)

    def _slot(self, claim: Claim) -> asyncio.Semaphore:
        key = (claim.tenant, claim.app)
        sem = self._slots.get(key)
        if sem is None:
            sem = self._slots[key] = asyncio.Semaphore(self.slots_for(*key))
        return sem

    async def _claim(self, limit: int, config: Settings | None = None, **where: Any) -> list[Claim]:
        engine = self.engine
        claims: list[Claim] = await engine.db(
            engine.ledger.claim, owner=engine.owner, limit=limit,
            lease_seconds=(config or engine.config).ledger.lease_seconds,
            now=engine.clock.now(), **where)
        return claims

    async def process_due(self, *, limit: int = 256, event_pks: Sequence[int] | None = None,
                          tenant: str | None = None, apps: Sequence[str] | None = None) -> int:
        """Claim what is due and run it; return how many deliveries were worked."""
        # Never claim more than can start at once: a lease runs from its claim.
        claims = await self._claim(min(limit, self.capacity), event_pks=event_pks,
                                   tenant=tenant, apps=apps)
        if claims:
            await asyncio.gather(*(self.work(c) for c in claims))
        return len(claims)

    async def run_until_idle(self, *, event_pks: Sequence[int] | None = None,
                             tenant: str | None = None, apps: Sequence[str] | None = None,
                             stop: asyncio.Event | None = None,
                             concurrency: int | None = None) -> int:
        """Work until nothing is due; return how many deliveries were worked.

        Keeps up to ``concurrency`` deliveries in flight, claiming more as soon as
        slots free up, so one slow app or tenant never leaves the others idle.
        Once ``stop`` is set (a shutdown), nothing more is claimed: the deliveries
        in flight are finished. ``concurrency`` caps the deliveries in flight (default
        :attr:`capacity`).
        """
        concurrency = concurrency or self.capacity
        inflight: set[asyncio.Task[None]] = set()
        total = 0
        batch = max(1, concurrency // 16)  # a claim is a write: claim a few at a time
        try:
            while True:
                free = concurrency - len(inflight)
                if stop is not None and stop.is_set():
                    free = 0
                if free and (free >= batch or not inflight):
                    config = self.engine.config  # read once for the claim and what it took
                    claims = await self._claim(free, config, event_pks=event_pks, tenant=tenant,
                                               apps=apps)
                    total += len(claims)
                    inflight |= {asyncio.create_task(self.work(c, config)) for c in claims}
                if not inflight:
                    return total
                done, inflight = await asyncio.wait(inflight,
                                                    return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
        except asyncio.CancelledError:
            # Stopped (a shutdown past its grace): the deliveries in flight stop too, each
            # giving its lease back, before anything they use is closed.
            for task in inflight:
                task.cancel()
            await asyncio.gather(*inflight, return_exceptions=True)
            raise

    async def work(self, claim: Claim, config: Settings | None = None) -> None:
        """Run one claimed delivery and record its outcome, keeping the lease meanwhile
        (``config``: the settings as read when it was claimed, if the caller has them)."""
        engine = self.engine
        task = asyncio.current_task()
        assert task is not None
        # Read once per delivery at most: with a settings file each read checks the file.
        config = config or engine.config
        # The lease runs from the claim: it is kept from before any wait for a slot.
        lease = self.leases.hold(claim, task, engine.clock.monotonic(),
                                 config.ledger.lease_seconds)
        key = (claim.tenant, claim.app)
        try:
            async with self._slot(claim):
                self.running[key] = self.running.get(key, 0) + 1
                try:
                    started = engine.clock.now()
                    outcome, delivery = await self._attempt(claim, config)
                    outcome = engine.confirmer.schedule(claim.tenant, claim.app, outcome)
                finally:
                    self.running[key] -= 1
                self.leases.drop(lease)
                await engine.db(engine.ledger.finish, claim, _unkept(outcome, delivery),
                                now=engine.clock.now(), started_at=started)
                for observer in self.finished:
                    observer(claim, outcome)
        except LeaseLost:
            log.warning("lease lost on delivery %s; another worker owns it now", claim.delivery_id)
        except asyncio.CancelledError:
            if lease.lost:
                log.warning("lease on delivery %s could not be kept; work stopped", claim.delivery_id)
                return
            # Stopped (a shutdown past its grace): the lease is given back, so the delivery
            # is due again at once; a write begun is looked up before it is sent again.
            self.leases.drop(lease)
            await asyncio.shield(engine.db(engine.ledger.release, claim))
            raise
        finally:
            self.leases.drop(lease)

    def _deadline(self, claim: Claim, occurred_at: datetime | None) -> datetime | None:
        kept: datetime | None = getattr(claim, "deadline_at", None)
        if kept is not None:
            return kept
        if occurred_at is None:
            return None
        start = max(occurred_at, claim.first_attempt_at)
        return start + timedelta(hours=self.engine.config.ledger.deadline_hours)

    async def attempt(self, claim: Claim) -> Outcome:
        """One attempt at a delivery: its outcome, whatever the pipeline raised."""
        return (await self._attempt(claim, self.engine.config))[0]

    async def _attempt(self, claim: Claim, config: Settings) -> tuple[Outcome, LedgerDelivery | None]:
        """:meth:`attempt` under ``config``, and the delivery's ``ctx.delivery`` if it got
        that far."""
        engine = self.engine
        occurred_at: datetime | None = None
        delivery: LedgerDelivery | None = None
        if claim.records:
            priority.set(1)  # resuming a log begun earlier: finish it first
        try:
            event = engine.intake.cached(claim.event_pk, claim.revision)
            if event is None:
                event = await engine.db(engine.ledger.load_event, claim.event_pk)
            occurred_at = event.occurred_at
            tenant = config.tenants.get(claim.tenant)
            if tenant is None or claim.app not in tenant.apps:
                return Outcome(status=OutcomeStatus.SKIPPED, reason="app_removed",
                               message="The app is no longer connected for this tenant."), None
            try:
                hooks = engine.hooks_for(tenant, claim.app)
            except KeyError:
                raise ConfigError(f"the plugin of app {claim.app!r} is not installed") from None
            if (held := await self.reauthorisation.parked(claim.tenant, claim.app)) is not None:
                return held, None  # refused with the credentials it still has: no request
            marker = engine.ledger.marker_for(event, claim.first_attempt_at)
            delivery = LedgerDelivery(engine.gateway, engine.ledger, claim, marker)
            ctx = engine.context(claim.tenant, claim.app, delivery, tenant=tenant)
            job = Job(event=event, hooks=hooks, ctx=ctx, chosen_contact_ids=claim.chosen_contact_ids,
                      notes=claim.notes, needs_update=claim.needs_update)
            batched = hooks.supports(Capability.BATCH_WRITES) and not claim.needs_update
            return (await run(job, engine.index, writer=self.batcher.write if batched else None),
                    delivery)
        except LeaseLost:
            raise
        except Exception as exc:
            outcome = outcome_for_error(exc, attempt=claim.attempt, now=engine.clock.now(),
                                        deadline=self._deadline(claim, occurred_at))
            await self.reauthorisation.note(claim.tenant, claim.app, outcome)
            return outcome, delivery


def _unkept(outcome: Outcome, delivery: LedgerDelivery | None) -> Outcome:
    """The outcome as the ledger is to finish it: the records equal to ones this delivery
    has kept already (read with its claim, or remembered and committed since) are left
    out, so the ledger does not look them up again; any other record is checked there."""
    if delivery is None or not outcome.records:
        return outcome
    kept = set(delivery.records)
    rest = tuple(r for r in outcome.records if r not in kept)
    return outcome if len(rest) == len(outcome.records) else outcome.model_copy(
        update={"records": rest})
