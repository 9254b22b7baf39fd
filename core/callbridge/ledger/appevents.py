"""Accepted deliveries found by the marker their writes carried (app events).

An app that reports on its writes (``callbridge.appevents``) names a write by
the marker the write carried. Markers are keyed hashes of the event's identity,
so the ledger computes the marker of each accepted delivery of the (tenant, app)
and keeps the ones asked for. A delivery's marker never changes, so it is worked
out once per process (:attr:`AppEventsMixin._marker_memo`).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa

from callbridge.ledger import tables as t
from callbridge.ledger._base import LedgerCore
from callbridge.ledger.confirmations import AcceptedDelivery
from callbridge.markers import marker_for

#: Markers kept in memory per process, by delivery id (a delivery's marker is fixed).
MEMO_SIZE = 50_000


class AppEventsMixin(LedgerCore):
    """Accepted deliveries by marker."""

    _marker_memo: dict[int, str] | None = None

    def accepted_by_marker(self, tenant: str, app: str, markers: Collection[str], *,
                           now: datetime | None = None) -> dict[str, AcceptedDelivery]:
        """The accepted deliveries of ``(tenant, app)`` whose marker is one of ``markers``
        (marker -> delivery, with its records)."""
        wanted = set(markers)
        if not wanted or self.hash_key is None:
            return {}
        now = now or self._now()
        d, e, a = t.deliveries, t.events, t.attempts
        accepted_at = (sa.select(sa.func.max(a.c.finished_at))
                       .where(a.c.delivery_id == d.c.id, a.c.status == "accepted")
                       .scalar_subquery())
        query = (sa.select(d.c.id, d.c.event_id, d.c.first_attempt_at, d.c.next_attempt_at,
                           d.c.updated_at, e.c.tenant, e.c.source, e.c.kind,
                           e.c.source_id_enc, accepted_at.label("accepted_at"))
                 .join(e, e.c.id == d.c.event_id)
                 .where(d.c.tenant == tenant, d.c.app == app, d.c.status == "accepted"))
        memo = self._marker_memo
        if memo is None:
            memo = self._marker_memo = {}
        found: dict[str, AcceptedDelivery] = {}
        with self._read() as conn:
            rows = conn.execute(query).all()
            hits = []
            for row in rows:
                marker = memo.get(row.id)
                if marker is None:
                    event_id = self._cipher.decrypt(row.source_id_enc)
                    if not event_id:  # erased: it carries no marker any more
                        continue
                    marker = marker_for(self.hash_key, (row.tenant, row.source, row.kind,
                                                        event_id), row.first_attempt_at)
                    if len(memo) >= MEMO_SIZE:
                        memo.clear()
                    memo[row.id] = marker
                if marker in wanted:
                    hits.append((marker, row))
            recs = self._records(conn, [row.id for _, row in hits])
        for marker, row in hits:
            found[marker] = AcceptedDelivery(
                delivery_id=row.id, event_pk=row.event_id, tenant=tenant, app=app,
                records=recs.get(row.id, ()), accepted_at=row.accepted_at or row.updated_at,
                check_at=row.next_attempt_at or now, first_attempt_at=row.first_attempt_at)
        return found
