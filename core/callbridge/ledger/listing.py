"""Reading the ledger page by page, for the operator API: events with their
deliveries, and deliveries by state, newest first, each page after a cursor (the
last id of the page before), limited to the tenants an operator may see.

A cursor is an id, not an offset, so a page stays right while new events arrive.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callbridge.ledger import tables as t
from callbridge.ledger._base import FINAL_OK, LedgerCore
from callbridge.ledger.types import DeliveryView

#: The states a delivery may be re-queued from by hand (SPEC §2.6: waiting and parked
#: deliveries are not failures; they resume on their own).
REQUEUEABLE = ("dead", "failed")


@dataclass(frozen=True)
class EventRow:
    """One stored event as a list shows it (no contents: those stay encrypted)."""

    event_pk: int
    tenant: str
    source: str
    kind: str
    source_id: str | None
    occurred_at: datetime
    received_at: datetime
    revision: int
    erased: bool

    @property
    def masked_id(self) -> str:
        """The source's event id with all but its last 4 characters hidden."""
        from callbridge.markers import mask_id

        return mask_id(self.source_id or None)


def _scope(column: Any, tenants: Collection[str] | None) -> list[Any]:
    return [] if tenants is None else [column.in_(sorted(tenants))]


class ListingMixin(LedgerCore):
    """Pages of events and deliveries."""

    if TYPE_CHECKING:  # from ViewsMixin, beside this one in Ledger
        def _views(self, conn: Connection, where: list[Any], limit: int = 10**9,
                   newest_first: bool = True) -> list[DeliveryView]: ...

    def event_page(self, *, tenants: Collection[str] | None = None, app: str | None = None,
                   statuses: Collection[str] | None = None, since: datetime | None = None,
                   before: int | None = None, limit: int = 50) -> list[EventRow]:
        """Events newest first (by id), below ``before``; with ``app`` or ``statuses``
        only those with a delivery to that app / in one of those states."""
        e, d = t.events, t.deliveries
        where: list[Any] = _scope(e.c.tenant, tenants)
        if since is not None:
            where.append(e.c.occurred_at >= since)
        if before is not None:
            where.append(e.c.id < before)
        if app is not None or statuses:
            match: list[Any] = [d.c.event_id == e.c.id]
            if app is not None:
                match.append(d.c.app == app)
            if statuses:
                match.append(d.c.status.in_(sorted(statuses)))
            where.append(sa.exists().where(*match))
        query = (sa.select(e.c.id, e.c.tenant, e.c.source, e.c.kind, e.c.source_id_enc,
                           e.c.occurred_at, e.c.received_at, e.c.revision, e.c.purged_at)
                 .where(*where).order_by(e.c.id.desc()).limit(limit))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [EventRow(event_pk=r.id, tenant=r.tenant, source=r.source, kind=r.kind,
                         source_id=self._cipher.decrypt(r.source_id_enc),
                         occurred_at=r.occurred_at, received_at=r.received_at,
                         revision=r.revision, erased=r.purged_at is not None) for r in rows]

    def event_row(self, event_pk: int) -> EventRow | None:
        """One event as :meth:`event_page` lists it; None if there is none."""
        e = t.events
        with self._read() as conn:
            r = conn.execute(sa.select(e.c.id, e.c.tenant, e.c.source, e.c.kind,
                                       e.c.source_id_enc, e.c.occurred_at, e.c.received_at,
                                       e.c.revision, e.c.purged_at)
                             .where(e.c.id == event_pk)).first()
        if r is None:
            return None
        return EventRow(event_pk=r.id, tenant=r.tenant, source=r.source, kind=r.kind,
                        source_id=self._cipher.decrypt(r.source_id_enc),
                        occurred_at=r.occurred_at, received_at=r.received_at,
                        revision=r.revision, erased=r.purged_at is not None)

    def delivery_page(self, *, tenants: Collection[str] | None = None, app: str | None = None,
                      statuses: Collection[str] | None = None, since: datetime | None = None,
                      before: int | None = None, limit: int = 50) -> list[DeliveryView]:
        """Deliveries newest first (by id), below ``before``, filtered as given."""
        d = t.deliveries
        where: list[Any] = _scope(d.c.tenant, tenants)
        if app is not None:
            where.append(d.c.app == app)
        if statuses:
            where.append(d.c.status.in_(sorted(statuses)))
        if since is not None:
            where.append(d.c.occurred_at >= since)
        if before is not None:
            where.append(d.c.id < before)
        with self._read() as conn:
            ids = list(conn.execute(sa.select(d.c.id).where(*where)
                                    .order_by(d.c.id.desc()).limit(limit)).scalars())
            views = self._views(conn, [d.c.id.in_(ids)]) if ids else []
        return sorted(views, key=lambda v: v.delivery_id, reverse=True)

    def requeue_ended(self, delivery_id: int, *, statuses: Collection[str] = REQUEUEABLE
                      ) -> bool:
        """Put a delivery back to pending if (and only if) it is in one of ``statuses``
        now, with a new deadline; the check and the change are one statement. Returns
        whether it was re-queued."""
        if set(statuses) & set(FINAL_OK):
            raise ValueError("a logged or accepted delivery is never re-queued")
        d = t.deliveries
        with self._write() as conn:
            done = conn.execute(d.update().where(
                d.c.id == delivery_id, d.c.status.in_(sorted(statuses))).values(
                status="pending", reason=None, updated_at=self._now(), next_attempt_at=None,
                retryable=False, deadline_at=self._now() + self.deadline)).rowcount
        return bool(done)
