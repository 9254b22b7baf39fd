"""Accepted deliveries awaiting confirmation (SPEC §2.6): an app that writes
asynchronously answered "accepted"; a later check moves the delivery to logged,
or back to waiting when the record never appeared.

An accepted delivery's ``next_attempt_at`` is when it is next checked (None: it
is not checked). :meth:`ConfirmationsMixin.accepted_due` given an ``owner``
leases the deliveries it lists to that owner for the check (so two processes do
not check the same ones, and no update of the log starts meanwhile). Each change
below applies only to a delivery still accepted and leased to that owner (or,
without an owner, not leased at all), ends the lease, and says whether it applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callbridge.ledger import tables as t
from callbridge.ledger._base import LedgerCore
from callbridge.models import Record


@dataclass(frozen=True)
class AcceptedDelivery:
    """An accepted delivery due for a confirmation check."""

    delivery_id: int
    event_pk: int
    tenant: str
    app: str
    records: tuple[Record, ...]
    #: When the app accepted the write (the last attempt that ended accepted).
    accepted_at: datetime
    check_at: datetime
    #: When the delivery's first attempt began: no record of it was written before.
    first_attempt_at: datetime | None = None


class ConfirmationsMixin(LedgerCore):
    """Listing and settling accepted deliveries."""

    def accepted_due(self, *, now: datetime | None = None, limit: int = 1000,
                     tenant: str | None = None, apps: Sequence[str] | None = None,
                     event_pks: Sequence[int] | None = None, owner: str | None = None,
                     lease_seconds: float = 300.0) -> list[AcceptedDelivery]:
        """Accepted deliveries whose check is due by ``now``, oldest check first;
        leased to ``owner`` for ``lease_seconds`` when one is given."""
        now = now or self._now()
        d, a = t.deliveries, t.attempts
        accepted_at = (sa.select(sa.func.max(a.c.finished_at))
                       .where(a.c.delivery_id == d.c.id, a.c.status == "accepted")
                       .scalar_subquery())
        query = (sa.select(d.c.id, d.c.event_id, d.c.tenant, d.c.app, d.c.next_attempt_at,
                           d.c.updated_at, d.c.first_attempt_at, accepted_at.label("accepted_at"))
                 .where(d.c.status == "accepted", d.c.next_attempt_at.is_not(None),
                        d.c.next_attempt_at <= now, self._free(now))
                 .order_by(d.c.next_attempt_at, d.c.id).limit(limit))
        if tenant is not None:
            query = query.where(d.c.tenant == tenant)
        if apps is not None:
            query = query.where(d.c.app.in_(list(apps)))
        if event_pks is not None:
            query = query.where(d.c.event_id.in_(list(event_pks)))
        if owner is not None and not self._sqlite:
            query = query.with_for_update(skip_locked=True, of=d)
        with self._write() if owner is not None else self._read() as conn:
            rows = conn.execute(query).all()
            recs = self._records(conn, [r.id for r in rows]) if rows else {}
            if owner is not None and rows:
                conn.execute(d.update().where(d.c.id.in_([r.id for r in rows])).values(
                    lease_owner=owner, lease_expires=now + timedelta(seconds=lease_seconds)))
        return [AcceptedDelivery(
            delivery_id=r.id, event_pk=r.event_id, tenant=r.tenant, app=r.app,
            records=recs.get(r.id, ()), accepted_at=r.accepted_at or r.updated_at,
            check_at=r.next_attempt_at, first_attempt_at=r.first_attempt_at) for r in rows]

    @staticmethod
    def _free(now: datetime) -> Any:
        d = t.deliveries
        return sa.or_(d.c.lease_expires.is_(None), d.c.lease_expires < now)

    def _settle_accepted(self, conn: Connection, delivery_id: int, now: datetime,
                         owner: str | None, **values: Any) -> bool:
        d = t.deliveries
        held = self._free(now) if owner is None else sa.and_(
            d.c.lease_owner == owner, d.c.lease_expires >= now)
        return bool(conn.execute(d.update().where(
            d.c.id == delivery_id, d.c.status == "accepted", held).values(
            updated_at=now, lease_owner=None, lease_expires=None, **values)).rowcount)

    def set_confirmed(self, delivery_id: int, *, now: datetime | None = None,
                      owner: str | None = None) -> bool:
        """The app shows the accepted records: the delivery is logged (its reason kept)."""
        now = now or self._now()
        with self._write() as conn:
            return self._settle_accepted(conn, delivery_id, now, owner, status="logged",
                                         next_attempt_at=None)

    def recheck_accepted(self, delivery_id: int, at: datetime, *,
                         now: datetime | None = None, owner: str | None = None) -> bool:
        """Not visible yet: check the delivery again at ``at``."""
        now = now or self._now()
        with self._write() as conn:
            return self._settle_accepted(conn, delivery_id, now, owner, next_attempt_at=at)

    def reopen_unconfirmed(self, delivery_id: int, *, retry_at: datetime, message: str,
                           now: datetime | None = None, owner: str | None = None) -> bool:
        """The accepted records never appeared: drop them and retry the delivery.

        The delivery waits (``backoff``) until ``retry_at``, or is ``dead`` when that
        is past its deadline. Its records are dropped, but each stays noted as a
        step begun, so the retry first looks the record up by the delivery's marker
        (it may have appeared meanwhile) and creates it only if it is not found.
        """
        now = now or self._now()
        d, r, s = t.deliveries, t.records, t.steps
        with self._write() as conn:
            row = conn.execute(sa.select(d.c.deadline_at, d.c.fence).where(
                d.c.id == delivery_id)).first()
            if row is None:
                return False
            dead = row.deadline_at is not None and retry_at > row.deadline_at
            values: dict[str, Any] = (
                {"status": "dead", "reason": "deadline", "retryable": False,
                 "next_attempt_at": None} if dead else
                {"status": "waiting", "reason": "backoff", "retryable": True,
                 "next_attempt_at": retry_at})
            if not self._settle_accepted(conn, delivery_id, now, owner, message=message,
                                         **values):
                return False
            kept = conn.execute(sa.select(r.c.kind, r.c.step).where(
                r.c.delivery_id == delivery_id)).all()
            begun = {(b.kind, b.step) for b in conn.execute(sa.select(s.c.kind, s.c.step).where(
                s.c.delivery_id == delivery_id))}
            missing = [{"delivery_id": delivery_id, "kind": k.kind, "step": k.step,
                        "fence": row.fence, "begun_at": now}
                       for k in kept if (k.kind, k.step) not in begun]
            if missing:
                conn.execute(s.insert(), missing)
            conn.execute(r.delete().where(r.c.delivery_id == delivery_id))
            return True
