"""Events stored together on PostgreSQL: the new events of one ``store_events`` call in
one transaction (group commit).

``callbridge serve`` hands the ledger the events of the requests that arrive together
(:mod:`callbridge.intake`); stored one transaction each, every event cost a BEGIN, a
SELECT, two INSERTs and a COMMIT, each a round trip. Here the call's events go in one
multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (the ones already known are
not inserted: they come back as absent), their deliveries in one more, then one
COMMIT; the callers are answered after it, so an acknowledged event is committed.
The events known already (duplicates, revisions, erased) are then stored the general
way, one transaction each, in their order. The rows are the ones
:meth:`~callbridge.ledger.events.EventsMixin.store_event` writes for a new event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.dialects.postgresql import insert

from callbridge.events import AnyEvent, dump_event
from callbridge.ledger import tables as t
from callbridge.ledger.types import Stored

if TYPE_CHECKING:
    from callbridge.ledger.events import EventsMixin

_IDENTITY = ("tenant", "source", "kind", "source_id")
_INSERT_EVENTS = insert(t.events).on_conflict_do_nothing(
    index_elements=list(_IDENTITY)).returning(t.events.c.id, *(t.events.c[c] for c in _IDENTITY))


def store_events(ledger: EventsMixin, events: Sequence[tuple[AnyEvent, Sequence[str]]],
                 holds: Sequence[datetime | None]) -> list[Stored]:
    """``Ledger.store_events`` on PostgreSQL (see the module's text)."""
    from callbridge.ledger.events import _new_delivery

    now = ledger._now()
    rows: list[dict[str, Any]] = []
    firsts: dict[tuple[str, ...], int] = {}  # identity -> the first of the call's events
    for n, (event, _) in enumerate(events):
        content = dump_event(event)
        tenant, source, kind, source_id = event.key
        ident = (tenant, source, kind, ledger._event_id(tenant, source, kind, source_id))
        if ident in firsts:
            continue  # the same event twice in one call: the second is a duplicate
        firsts[ident] = n
        rows.append({**dict(zip(_IDENTITY, ident, strict=True)),
                     "source_id_enc": ledger._cipher.encrypt(source_id),
                     "occurred_at": event.occurred_at, "received_at": now, "revision": 1,
                     "content_hash": ledger._cipher.digest("content", content),
                     "party_hash": ledger._party(event),
                     "content_enc": ledger._cipher.encrypt(content)})
    # In the order of their identity: two calls holding some of the same events take
    # their keys' locks in the same order, so they wait for each other, never deadlock.
    rows.sort(key=lambda row: tuple(row[c] for c in _IDENTITY))
    pks: dict[int, int] = {}  # the call's index -> the new event's key
    with ledger._write() as conn:
        if rows:
            for row in conn.execute(_INSERT_EVENTS, rows):
                pks[firsts[(row.tenant, row.source, row.kind, row.source_id)]] = int(row.id)
        deliveries = [_new_delivery(pk, events[n][0].tenant, app, events[n][0].occurred_at, now,
                                    ledger.deadline)
                      for n, pk in pks.items() for app in events[n][1]]
        if deliveries:
            conn.execute(t.deliveries.insert(), deliveries)
    out: list[Stored] = []
    for n, ((event, apps), hold) in enumerate(zip(events, holds, strict=True)):
        pk = pks.get(n)
        out.append(Stored(event_pk=pk, status="new", revision=1, event=event) if pk is not None
                   else ledger.store_event(event, apps=apps, received_at=now, hold_until=hold))
    return out
