"""Reading deliveries: history, one delivery, its attempts, counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callbridge.ledger import tables as t
from callbridge.ledger._base import (
    LedgerCore,
)
from callbridge.ledger.types import (
    AttemptView,
    DeliveryView,
)
from callbridge.models import Contact, Record


class ViewsMixin(LedgerCore):
    """What history shows."""


    def records(self, delivery_id: int) -> tuple[Record, ...]:
        """The records kept for a delivery, in the order they were written."""
        with self._read() as conn:
            return self._records(conn, [delivery_id]).get(delivery_id, ())

    @staticmethod
    def _views_query(where: list[Any], limit: int = 10**9, newest_first: bool = True) -> Any:
        """The SELECT of :meth:`_views`. Newest first, it reads ``ix_deliveries_updated``
        backwards and stops at ``limit`` (no scan and sort of every delivery)."""
        d, e = t.deliveries, t.events
        a = t.attempts
        # Waiting for room in a rate limit is not an attempt.
        count = (sa.select(sa.func.count()).where(
            a.c.delivery_id == d.c.id,
            sa.or_(a.c.status != "waiting", sa.func.coalesce(a.c.reason, "") != "rate_limit"))
            .correlate(d).scalar_subquery())
        query = (sa.select(d, e.c.source, e.c.kind, e.c.source_id_enc, count.label("n_attempts"))
                 .join(e, e.c.id == d.c.event_id).where(*where).limit(limit)
                 .order_by(d.c.updated_at.desc() if newest_first else d.c.id, d.c.id.desc()))
        return query

    def _views(self, conn: Connection, where: list[Any], limit: int = 10**9,
               newest_first: bool = True) -> list[DeliveryView]:
        rows = conn.execute(self._views_query(where, limit, newest_first)).all()
        recs = self._records(conn, [r.id for r in rows])
        views = []
        for r in rows:
            cands = json.loads(self._cipher.decrypt(r.candidates_enc) or "[]")
            views.append(DeliveryView(
                delivery_id=r.id, event_pk=r.event_id, tenant=r.tenant, app=r.app, source=r.source,
                kind=r.kind, source_id=self._cipher.decrypt(r.source_id_enc) or "",
                occurred_at=r.occurred_at, status=r.status,
                reason=r.reason, message=r.message, retryable=bool(r.retryable),
                next_attempt_at=r.next_attempt_at, records=recs.get(r.id, ()),
                attempts=int(r.n_attempts), updated_at=r.updated_at, mode=r.mode,
                candidates=tuple(Contact(id=c["id"], name=c.get("name")) for c in cands),
                deadline_at=r.deadline_at))
        return views

    def delivery(self, delivery_id: int) -> DeliveryView:
        """One delivery's view; KeyError if there is none."""
        with self._read() as conn:
            views = self._views(conn, [t.deliveries.c.id == delivery_id])
        if not views:
            raise KeyError(f"no delivery {delivery_id}")
        return views[0]

    def find_delivery(self, tenant: str, app: str, event_pk: int) -> DeliveryView | None:
        """The event's delivery to ``app``, or None."""
        d = t.deliveries
        with self._read() as conn:
            views = self._views(
                conn, [d.c.tenant == tenant, d.c.app == app, d.c.event_id == event_pk])
        return views[0] if views else None

    def deliveries_of(self, event_pk: int) -> list[DeliveryView]:
        """Every delivery of an event, oldest first."""
        with self._read() as conn:
            return self._views(conn, [t.deliveries.c.event_id == event_pk], newest_first=False)

    def history(self, *, tenant: str | None = None, app: str | None = None,
                status: str | None = None,
                since: datetime | None = None, limit: int = 1000,
                event_pks: Sequence[int] | None = None) -> list[DeliveryView]:
        """Deliveries, most recently changed first, filtered as given."""
        d = t.deliveries
        where: list[Any] = []
        if tenant is not None:
            where.append(d.c.tenant == tenant)
        if app is not None:
            where.append(d.c.app == app)
        if status is not None:
            where.append(d.c.status == status)
        if since is not None:
            where.append(d.c.occurred_at >= since)
        if event_pks is not None:
            where.append(d.c.event_id.in_(list(event_pks)))
        with self._read() as conn:
            return self._views(conn, where, limit)

    def attempts(self, delivery_id: int) -> list[AttemptView]:
        """Every attempt of a delivery, in order."""
        with self._read() as conn:
            rows = conn.execute(sa.select(t.attempts).where(t.attempts.c.delivery_id == delivery_id)
                                .order_by(t.attempts.c.id)).all()
        return [AttemptView(attempt=r.attempt, fence=r.fence, started_at=r.started_at,
                            finished_at=r.finished_at, status=r.status, reason=r.reason,
                            message=r.message, retryable=bool(r.retryable),
                            next_attempt_at=r.next_attempt_at) for r in rows]

    def counts(self, *, tenant: str | None = None) -> dict[tuple[str, str], int]:
        """How many deliveries per (app, status)."""
        d = t.deliveries
        query = sa.select(d.c.app, d.c.status, sa.func.count()).group_by(d.c.app, d.c.status)
        if tenant is not None:
            query = query.where(d.c.tenant == tenant)
        with self._read() as conn:
            return {(a, s): int(n) for a, s, n in conn.execute(query)}

    def due_summary(self, *, event_pks: Sequence[int] | None = None
                    ) -> list[tuple[str, str | None, int, int, datetime | None]]:
        """The open deliveries (pending, waiting, parked, accepted) counted in the
        database, not read: ``(status, reason, count, count with a next attempt time,
        the earliest next attempt time)`` per status and reason."""
        d = t.deliveries
        query = (sa.select(d.c.status, d.c.reason, sa.func.count(), sa.func.count(d.c.next_attempt_at),
                           sa.func.min(d.c.next_attempt_at))
                 .where(d.c.status.in_(("pending", "waiting", "parked", "accepted")))
                 .group_by(d.c.status, d.c.reason))
        if event_pks is not None:
            query = query.where(d.c.event_id.in_(list(event_pks)))
        with self._read() as conn:
            return [(status, reason, int(n), int(timed), first)
                    for status, reason, n, timed, first in conn.execute(query)]
