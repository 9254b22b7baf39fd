"""Each send is a work unit with the delivery states (SPEC §2.6).

One attempt calls the destination's ``send_closed_matter`` with a delivery of its
own (:class:`SendDelivery`): its ``marker`` is the send's idempotency id, the same
on every attempt, and ``step`` follows the host's write protocol (the step is noted
as begun in the ledger before the request, and the record kept at once after it).
The attempt's error becomes the send's state as a delivery's would
(:func:`callbridge.outcomes.outcome_for_error`): a transient failure waits with
backoff until the send's deadline, then the send is dead; a permanent one fails;
an authentication failure parks it until the next poll. Dead and failed sends
are queued again by :func:`requeue`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from callbridge.closing.store import ClosingStore, Send
from callbridge.models import ClosedMatter, OutcomeStatus, Record
from callbridge.outcomes import describe, outcome_for_error

if TYPE_CHECKING:
    from callbridge.engine import Engine

log = logging.getLogger("callbridge.closing")


def send_key(matter: ClosedMatter, *, again_when_closed_again: bool) -> str:
    """The send's key: the matter once, or once per closing when re-closings are sent."""
    return f"{matter.id}@{matter.closed_on.isoformat()}" if again_when_closed_again else matter.id


def marker_for(tenant: str, source: str, key: str) -> str:
    """The idempotency id: stable for the send, telling nothing of the firm or the client."""
    digest = hashlib.sha256(f"callbridge-closed\x1f{tenant}\x1f{source}\x1f{key}".encode())
    return f"cbm-{digest.hexdigest()[:32]}"


def new_send(tenant: str, source: str, key: str, matter: ClosedMatter) -> Send:
    return Send(key=key, marker=marker_for(tenant, source, key), matter=matter,
                matter_name=matter.name, closed_on=matter.closed_on.isoformat())


class SendDelivery:
    """``ctx.delivery`` for one attempt of one send (the host's write protocol)."""

    def __init__(self, store: ClosingStore, send: Send, now: datetime) -> None:
        self._store, self._send = store, send
        self._attempt = send.attempt
        self._first = send.first_attempt_at or now

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self._send.records)

    @property
    def first_attempt_at(self) -> datetime:
        return self._first

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def marker(self) -> str:
        return self._send.marker

    async def remember(self, record: Record) -> None:
        for kept in self._send.records:
            if (kept.kind, kept.step) == (record.kind, record.step):
                if kept.id != record.id:
                    from callbridge.ledger import DuplicateRecord

                    raise DuplicateRecord(f"a second {record.kind} record for step {record.step}")
                return
        self._send.records.append(record)
        await self._store.keep(self._send)

    async def step(self, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
                   find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
        for kept in self._send.records:
            if (kept.kind, kept.step) == (kind, key):
                return kept
        if (kind, key) in {tuple(b) for b in self._send.begun} and find is not None:
            found = await find()
            if found is not None:
                record = Record(kind=kind, id=found, step=key)
                await self.remember(record)
                return record
        if (kind, key) not in {tuple(b) for b in self._send.begun}:
            self._send.begun.append((kind, key))
            await self._store.keep(self._send)  # begun, before the request goes out
        record = Record(kind=kind, id=await create(), step=key)
        await self.remember(record)
        return record


async def attempt(engine: Engine, store: ClosingStore, send: Send, *,
                  deadline_hours: float) -> Send:
    """One attempt of a due send; the send as it now stands (kept in the ledger)."""
    now = engine.clock.now()
    matter = send.matter
    if matter is None:  # a sent send keeps no client: nothing to do
        return send
    send.attempt += 1
    if send.first_attempt_at is None:
        send.first_attempt_at = now
    if send.deadline_at is None:
        send.deadline_at = now + timedelta(hours=deadline_hours)
    delivery = SendDelivery(store, send, now)
    tenant = engine.config.tenant(store.tenant)
    hooks = engine.hooks_for(tenant, store.destination)
    try:
        ctx = engine.context(store.tenant, store.destination, delivery)  # type: ignore[arg-type]
        record = await hooks.send_closed_matter(ctx, client=matter.client, matter=matter)
    except Exception as exc:
        outcome = outcome_for_error(exc, attempt=send.attempt, now=now, deadline=send.deadline_at)
        log.info("closed matter send %s/%s: %s (%s)", store.tenant, store.destination,
                 outcome.status.value, type(exc).__name__)
        send.status, send.reason = outcome.status, outcome.reason
        send.message = outcome.message or describe(exc)
        send.next_attempt_at = outcome.next_attempt_at
    else:
        await delivery.remember(record)
        send.status, send.reason, send.message = OutcomeStatus.LOGGED, None, None
        send.next_attempt_at = None
    send.updated_at = now
    await store.keep(send)
    return send


async def requeue(store: ClosingStore, now: datetime) -> int:
    """Queue every dead or failed send again, with a fresh deadline; how many."""
    count = 0
    for key in await store.unsent_keys():
        send = await store.send(key)
        if send is None or send.status not in (OutcomeStatus.DEAD, OutcomeStatus.FAILED):
            continue
        send.status, send.reason, send.message = OutcomeStatus.PENDING, "requeued", None
        send.next_attempt_at, send.deadline_at, send.updated_at = None, None, now
        await store.keep(send)
        count += 1
    return count
