"""The confirmation work unit: accepted writes checked later (SPEC §2.6).

An app that writes asynchronously (capability ``async_writes``) answers a
create with "accepted"; the delivery ends ``accepted`` and its first check is
due ``confirm_after`` seconds later (the declaration's; default its
``consistency_delay``, or :data:`CONFIRM_AFTER`), rounded up to a multiple of
:data:`CHECK_GRAIN` so that writes accepted close together are checked together. The check asks the plugin's
``confirm_accepted`` about many deliveries of one connection in one call (their
records, and the earliest acceptance time), then, per delivery:

* every record found → ``logged``, its records kept;
* a record not visible yet (None, or the check itself failed) → checked again
  later, with a growing interval, until ``confirm_timeout`` after acceptance;
* a record missing (False), or still not visible after the timeout → the
  delivery's records are dropped and it waits (``backoff``) for a retry. Each
  dropped record stays noted as a step begun, so the retry first looks it up
  by the delivery's marker (it may have appeared late) and creates it only if
  it is not found: never a duplicate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from callbridge.capabilities import Capability, Declaration
from callbridge.errors import RateLimited
from callbridge.ledger import AcceptedDelivery
from callbridge.models import Outcome, OutcomeStatus

if TYPE_CHECKING:
    from callbridge.engine import Engine

log = logging.getLogger("callbridge.confirming")

#: Seconds before the first check when the app states no delay.
CONFIRM_AFTER = 120.0
#: First checks fall on multiples of this many seconds (never before the delay), so
#: the writes of a busy minute share one check.
CHECK_GRAIN = 30.0
#: The most deliveries one ``confirm_accepted`` call is given.
CONFIRM_BATCH = 200
#: Seconds between a record found missing and the delivery's retry.
RETRY_AFTER = 60.0
#: Seconds the deliveries of a check are leased to this process (another process
#: does not check them meanwhile; a check that outlasts it changes nothing).
LEASE = 300.0
#: The longest interval between two checks of a record not visible yet.
MAX_INTERVAL = 600.0
MISSING = "The app accepted the write but the record never appeared; it is written again."


def confirm_after(declaration: Declaration) -> float:
    """Seconds after an accepted write before its first check."""
    stated = getattr(declaration, "confirm_after", None)
    if stated is not None:
        return float(stated)
    return float(declaration.consistency_delay) or CONFIRM_AFTER


def _round_up(moment: datetime) -> datetime:
    """The first multiple of :data:`CHECK_GRAIN` seconds (Unix time) at or after ``moment``."""
    stamp = moment.timestamp()
    return moment + timedelta(seconds=math.ceil(stamp / CHECK_GRAIN) * CHECK_GRAIN - stamp)


def confirm_timeout(declaration: Declaration) -> float:
    return float(getattr(declaration, "confirm_timeout", 1800.0))


class Confirmer:
    """Runs the confirmation checks of one engine that are due."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: ``confirm_accepted`` calls made (for figures and tests).
        self.calls = 0

    def schedule(self, tenant: str, app: str, outcome: Outcome) -> Outcome:
        """An attempt's outcome, with its first check's time when it is ``accepted``
        by an app that declares ``async_writes``."""
        if outcome.status is not OutcomeStatus.ACCEPTED:
            return outcome
        engine = self.engine
        try:
            hooks = engine.hooks_for(engine.config.tenant(tenant), app)
        except KeyError:
            return outcome
        if not hooks.supports(Capability.ASYNC_WRITES):
            return outcome
        earliest = engine.clock.now() + timedelta(seconds=confirm_after(hooks.declaration))
        return outcome.model_copy(update={"next_attempt_at": _round_up(earliest)})

    async def run_due(self, *, event_pks: Sequence[int] | None = None) -> int:
        """Check every accepted delivery due now; return how many were settled
        (logged, or reopened for a retry)."""
        engine = self.engine
        due: list[AcceptedDelivery] = await engine.db(
            engine.ledger.accepted_due, now=engine.clock.now(), event_pks=event_pks,
            owner=engine.owner, lease_seconds=LEASE)
        groups: dict[tuple[str, str], list[AcceptedDelivery]] = {}
        for item in due:
            groups.setdefault((item.tenant, item.app), []).append(item)
        settled = 0
        for (tenant, app), items in groups.items():
            for start in range(0, len(items), CONFIRM_BATCH):
                settled += await self._check(tenant, app, items[start:start + CONFIRM_BATCH])
        return settled

    async def _check(self, tenant: str, app: str, items: list[AcceptedDelivery]) -> int:
        engine = self.engine
        try:
            hooks = engine.hooks_for(engine.config.tenant(tenant), app)
        except KeyError:
            hooks = None  # the app is gone: its deliveries stay accepted, checked later
        if hooks is None or not hooks.supports(Capability.ASYNC_WRITES):
            later = engine.clock.now() + timedelta(seconds=MAX_INTERVAL)
            for item in items:
                await engine.db(engine.ledger.recheck_accepted, item.delivery_id, later,
                                now=engine.clock.now(), owner=engine.owner)
            return 0
        declaration = hooks.declaration
        records = [r for item in items for r in item.records]
        # A write is made before its attempt finishes (accepted_at), by as much as the
        # attempt's ledger writes took: with many deliveries at once, one written before
        # another finished can finish after it. A record may also come from an earlier
        # attempt (a worker killed after writing it, found by its marker by the retry),
        # so the look back starts at the first attempt, one lease before it.
        since = min(item.first_attempt_at or item.accepted_at for item in items) - timedelta(
            seconds=engine.config.ledger.lease_seconds)
        answer: dict[str, bool | None] = {}
        retry_after: float | None = None
        if records:
            try:
                self.calls += 1
                answer = await hooks.confirm_accepted(
                    engine.context(tenant, app), records=records, since=since)
            except RateLimited as exc:
                retry_after = exc.retry_after
                log.info("confirmation of %s/%s rate-limited", tenant, app)
            except Exception as exc:
                log.warning("confirmation of %s/%s failed: %s; checked again later",
                            tenant, app, type(exc).__name__)
        settled = 0
        now = engine.clock.now()
        for item in items:
            found = [answer.get(r.id) for r in item.records]
            if all(f is True for f in found):
                settled += await engine.db(engine.ledger.set_confirmed, item.delivery_id,
                                           now=now, owner=engine.owner)
                continue
            elapsed = (now - item.accepted_at).total_seconds()
            if False in found or elapsed >= confirm_timeout(declaration):
                settled += await engine.db(
                    engine.ledger.reopen_unconfirmed, item.delivery_id,
                    retry_at=now + timedelta(seconds=RETRY_AFTER), message=MISSING, now=now,
                    owner=engine.owner)
                continue
            await engine.db(engine.ledger.recheck_accepted, item.delivery_id,
                            self._next_check(declaration, item.accepted_at, now, retry_after),
                            now=now, owner=engine.owner)
        return settled

    @staticmethod
    def _next_check(declaration: Declaration, accepted_at: datetime, now: datetime,
                    retry_after: float | None) -> datetime:
        """The interval grows with the time since acceptance (at least the first
        check's delay, at most :data:`MAX_INTERVAL`); the last check falls at the timeout."""
        elapsed = (now - accepted_at).total_seconds()
        interval = min(MAX_INTERVAL, max(confirm_after(declaration), elapsed / 2))
        if retry_after is not None:
            interval = max(interval, retry_after)
        last = accepted_at + timedelta(seconds=confirm_timeout(declaration))
        return max(min(now + timedelta(seconds=interval), last), now + timedelta(seconds=1))
