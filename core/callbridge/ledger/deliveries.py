"""Deliveries: claims under a fenced lease, the write protocol's steps and records,
outcomes and their states (SPEC §2.6), a user's choices."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callbridge.ledger import hotsql
from callbridge.ledger import tables as t
from callbridge.ledger._base import (
    _CLAIM,
    _FENCED_LOGGED,
    _SELECT_RECORD,
    FINAL_OK,
    PARKED_REASONS,
    LedgerCore,
)
from callbridge.ledger.pgdirect import new_records
from callbridge.ledger.types import (
    AlreadyLogged,
    Claim,
    DuplicateRecord,
    LeaseLost,
)
from callbridge.models import Outcome, Record


def settle(outcome: Outcome, deadline_at: datetime | None,
           now: datetime) -> tuple[str, str | None, str | None, datetime | None]:
    """The (status, reason, message, next attempt) the ledger keeps for an outcome.

    A failed outcome marked retryable (hook API 1.x) waits: for ``rate_limit``
    when the app's rate limit refused it, else in ``backoff``, its error kept in
    the message. A backoff that would end past the delivery's deadline ends it:
    the delivery is ``dead`` (reason ``deadline``), the last error kept.
    """
    status, reason = outcome.status.value, outcome.reason
    message, next_at = outcome.message, outcome.next_attempt_at
    if status == "failed" and outcome.retryable:
        status, message = "waiting", message or reason
        reason = "rate_limit" if reason in ("rate_limited", "rate_limit") else "backoff"
    if (status == "waiting" and reason == "backoff" and deadline_at is not None
            and (next_at or now) > deadline_at):
        status, reason, next_at = "dead", "deadline", None
    return status, reason, message, next_at


class DeliveriesMixin(LedgerCore):
    """Claiming, working and ending deliveries."""

    def claim(self, *, owner: str, limit: int, lease_seconds: float, now: datetime | None = None,
              tenant: str | None = None, apps: Sequence[str] | None = None,
              event_pks: Sequence[int] | None = None,
              modes: Sequence[str] | None = None) -> list[Claim]:
        """Lease up to ``limit`` due deliveries to ``owner``; each claim raises the fence."""
        job = self.hot_job("claim", owner=owner, limit=limit, lease_seconds=lease_seconds,
                           now=now, tenant=tenant, apps=apps, event_pks=event_pks, modes=modes)
        if job is not None:
            assert self._hot is not None
            claimed: list[Claim] = self._hot.run(job)
            return claimed
        now = now or self._now()
        if self._direct is not None:  # one statement (ledger.pgdirect)
            return self._direct.claim(
                owner=owner, limit=limit, now=now, expires=now + timedelta(seconds=lease_seconds),
                decrypt=self._cipher.decrypt, where={"tenant": tenant, "apps": apps,
                                                     "event_pks": event_pks, "modes": modes})
        query = self._due_query(now=now, limit=limit, tenant=tenant, apps=apps,
                                event_pks=event_pks, modes=modes)
        expires = now + timedelta(seconds=lease_seconds)
        claims: list[Claim] = []
        with self._write() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return []
            kinds = {e.id: (e.kind, e.revision) for e in conn.execute(
                sa.select(t.events.c.id, t.events.c.kind, t.events.c.revision).where(
                    t.events.c.id.in_([r.event_id for r in rows])))}
            recs = self._records(conn, [r.id for r in rows])
            begun: dict[int, set[tuple[str, str]]] = {}
            for s in conn.execute(sa.select(t.steps.c.delivery_id, t.steps.c.kind, t.steps.c.step)
                                  .where(t.steps.c.delivery_id.in_([r.id for r in rows]))):
                begun.setdefault(s.delivery_id, set()).add((s.kind, s.step))
            conn.execute(_CLAIM, [
                {"did": r.id, "owner": owner, "expires": expires, "fence": r.fence + 1,
                 "attempt": r.attempt + 1, "first": r.first_attempt_at or now, "now": now}
                for r in rows])
            for r in rows:
                first = r.first_attempt_at or now
                claims.append(Claim(
                    delivery_id=r.id, event_pk=r.event_id, tenant=r.tenant, app=r.app,
                    kind=kinds[r.event_id][0], revision=kinds[r.event_id][1],
                    fence=r.fence + 1, attempt=r.attempt + 1,
                    first_attempt_at=first, records=recs.get(r.id, ()),
                    chosen_contact_ids=tuple(json.loads(r.chosen_contact_ids))
                    if r.chosen_contact_ids else None,
                    needs_update=bool(r.needs_update), notes=self._cipher.decrypt(r.notes_enc),
                    mode=r.mode, owner=owner, deadline_at=r.deadline_at,
                    begun=frozenset(begun.get(r.id, ()))))
        return claims

    def _due_query(self, *, now: datetime, limit: int, tenant: str | None = None,
                   apps: Sequence[str] | None = None, event_pks: Sequence[int] | None = None,
                   modes: Sequence[str] | None = None, lock: bool = True) -> Any:
        """The SELECT of a claim: due deliveries, oldest event first (on PostgreSQL
        locked, skipping rows locked by another claim, unless ``lock`` is false).

        Each branch of its ``OR`` has an index (``ix_deliveries_due`` for pending and
        waiting, ``ix_deliveries_needs_update`` for an update of a logged event), so
        an idle claim reads no logged row under the write lock
        (tests/test_ledger_indexes.py checks the plans).
        """
        d = t.deliveries
        # Pending, and waiting once its time has come; never parked. A failed update of
        # a logged event waits like any other delivery, and once it gives up is not due.
        due = sa.or_(
            d.c.status == "pending",
            sa.and_(d.c.status == "waiting",
                    sa.or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now)),
            sa.and_(d.c.needs_update.is_(True), d.c.status.in_(FINAL_OK)))
        # The same condition as the partial index ix_deliveries_open (migration 0008), as
        # text: the databases use a partial index only for a query that states its condition.
        if self._sqlite:
            due = sa.and_(due, sa.text("(status IN ('pending', 'waiting') OR needs_update IS 1)"))
        elif self._postgres:
            due = sa.and_(due, sa.text(
                "(status IN ('pending', 'waiting') OR needs_update IS TRUE)"))
        free = sa.or_(d.c.lease_expires.is_(None), d.c.lease_expires < now)
        held_back = sa.and_(d.c.not_before.is_not(None), d.c.not_before > now)
        query = (sa.select(d).where(due, free, sa.not_(held_back))
                 .order_by(d.c.occurred_at, d.c.id).limit(limit))
        # Without statistics (SQLite; a young PostgreSQL table) a tenant or app filter
        # would pick a (tenant, ...) index and read every delivery of the tenant, logged
        # ones included: `|| ''` keeps these filters off the index choice, so the due
        # states' indexes are used and the filters apply to the few rows they find.
        tenant_col, app_col = d.c.tenant + "", d.c.app + ""
        if tenant is not None:
            query = query.where(tenant_col == tenant)
        if apps is not None:
            query = query.where(app_col.in_(list(apps)))
        if event_pks is not None:
            query = query.where(d.c.event_id.in_(list(event_pks)))
        if modes is not None:
            query = query.where(d.c.mode.in_(list(modes)))
        if lock and not self._sqlite:
            query = query.with_for_update(skip_locked=True)
        return query

    def renew(self, claim: Claim, lease_seconds: float) -> None:
        """Extend the lease from now; :class:`LeaseLost` if another owner has the delivery."""
        now = self._now()
        if self._direct is not None:
            return self._direct.renew(claim, now + timedelta(seconds=lease_seconds))
        with self._write() as conn:
            self._fenced(conn, claim, lease_expires=now + timedelta(seconds=lease_seconds))

    def begin_step(self, claim: Claim, kind: str, key: str) -> None:
        """Note, under the claim's fence, that a write of (kind, key) is about to be sent.

        Called before the request that creates the record: if the attempt ends
        before :meth:`remember` keeps the result, a later attempt knows the write
        is uncertain (``Claim.begun``, :meth:`step_begun`) and looks for it first.
        """
        job = self.hot_job("begin_step", claim, kind, key)
        if job is not None:
            return self._run_hot(job)
        now = self._now()
        if self._direct is not None:
            return self._direct.begin_step(claim, kind, key, now)
        row = {"delivery_id": claim.delivery_id, "kind": kind, "step": key,
               "fence": claim.fence, "begun_at": now}
        with self._write() as conn:
            self._fenced(conn, claim, updated_at=now)
            if self._insert is not None:
                conn.execute(self._insert(t.steps).values(**row).on_conflict_do_nothing())
            elif conn.execute(sa.select(t.steps.c.fence).where(
                    t.steps.c.delivery_id == claim.delivery_id, t.steps.c.kind == kind,
                    t.steps.c.step == key)).first() is None:
                conn.execute(t.steps.insert().values(**row))

    def step_begun(self, claim: Claim, kind: str, key: str) -> bool:
        """Whether any attempt of the delivery began the write of (kind, key)."""
        with self._read() as conn:
            return conn.execute(sa.select(t.steps.c.fence).where(
                t.steps.c.delivery_id == claim.delivery_id, t.steps.c.kind == kind,
                t.steps.c.step == key)).first() is not None

    def remember(self, claim: Claim, record: Record) -> None:
        """Keep a record written in the app, at once, under the claim's fence.

        The same record again is a no-op; a different record for a (kind, step)
        already kept raises :class:`DuplicateRecord` (the first one stays).
        """
        job = self.hot_job("remember", claim, record)
        if job is not None:
            return self._run_hot(job)
        now = self._now()
        if self._direct is not None:
            kept = self._direct.remember(claim, record, now)
            if kept is not None:
                new_records(claim.delivery_id, [record], {(record.kind, record.step): kept})
            return None
        with self._write() as conn:
            self._fenced(conn, claim, updated_at=now)
            if self._new_records(conn, claim.delivery_id, [record]):
                self._insert_records(conn, claim.delivery_id, [record], now)

    @staticmethod
    def _new_records(conn: Connection, delivery_id: int,
                     recs: Sequence[Record]) -> list[Record]:
        """The records not kept yet; :class:`DuplicateRecord` for one that differs from
        the record kept for its (kind, step)."""
        kept = {(rec.kind, rec.step): found for rec in recs if (found := conn.execute(
            _SELECT_RECORD, {"did": delivery_id, "kind": rec.kind, "step": rec.step}).scalar())
            is not None}
        return new_records(delivery_id, recs, kept)

    def _insert_records(self, conn: Connection, delivery_id: int, recs: Sequence[Record],
                        now: datetime) -> None:
        if recs:
            conn.execute(t.records.insert(), [
                {"delivery_id": delivery_id, "kind": r.kind, "app_id": r.id, "step": r.step,
                 "created_at": now} for r in recs])

    def finish(self, claim: Claim, outcome: Outcome, *, now: datetime | None = None,
               started_at: datetime | None = None) -> None:
        """Record the attempt's outcome (appended) and make it current, under the fence.

        After a log, the delivery still needs an update only if a newer revision of
        the event arrived while it was being written. A failed update that will be
        retried keeps asking for the update; any other outcome ends the request.
        """
        job = self.hot_job("finish", claim, outcome, now=now, started_at=started_at)
        if job is not None:
            return self._run_hot(job)
        now, values, (status, reason, message, next_at), ok, retry = self._finish_values(
            claim, outcome, now)
        if self._direct is not None:  # one statement (ledger.pgdirect)
            return self._direct.finish(claim, values, (status, reason, message, next_at), retry,
                                       started_at, logged=ok, records=outcome.records, now=now)
        with self._write() as conn:
            if ok and self._sqlite:  # the write lock is held from BEGIN: the subquery is exact
                self._fenced(conn, claim, _FENCED_LOGGED, _revision=claim.revision, **values)
            elif ok:
                # A shared row lock: a revision being stored now commits first or waits.
                current = conn.execute(sa.select(t.events.c.revision).where(
                    t.events.c.id == claim.event_pk).with_for_update(read=True)).scalar()
                values["needs_update"] = current is not None and current != claim.revision
                self._fenced(conn, claim, **values)
            else:
                self._fenced(conn, claim, **values)
            try:  # the records a log returned that were not remembered as they were made
                self._insert_records(conn, claim.delivery_id,
                                     self._new_records(conn, claim.delivery_id, outcome.records),
                                     now)
            except DuplicateRecord as exc:
                # Not dropped in silence: the attempt fails for good, saying which step.
                status, reason, message, next_at = "failed", "duplicate_record", str(exc), None
                retry = False
                conn.execute(t.deliveries.update().where(
                    t.deliveries.c.id == claim.delivery_id).values(
                    status=status, reason=reason, message=message, retryable=False,
                    next_attempt_at=None))
            conn.execute(t.attempts.insert(), {
                "delivery_id": claim.delivery_id, "attempt": claim.attempt, "fence": claim.fence,
                "started_at": started_at, "finished_at": now, "status": status,
                "reason": reason, "message": message, "retryable": retry,
                "next_attempt_at": next_at})

    def _finish_values(self, claim: Claim, outcome: Outcome, now: datetime | None) -> tuple[
            datetime, dict[str, Any], tuple[str, str | None, str | None, datetime | None],
            bool, bool]:
        """What :meth:`finish` writes: (now, the delivery's new values, the settled
        (status, reason, message, next attempt), logged?, retried later?)."""
        now = now or self._now()
        status, reason, message, next_at = settle(outcome, claim.deadline_at, now)
        ok = status in FINAL_OK
        retry = status in ("waiting", "parked")
        values: dict[str, Any] = {
            "status": status, "reason": reason, "message": message,
            "retryable": retry, "next_attempt_at": next_at,
            "lease_owner": None, "lease_expires": None, "updated_at": now,
            "candidates_enc": self._cipher.encrypt(json.dumps(
                [{"id": c.id, "name": c.name} for c in outcome.candidates]))
            if outcome.candidates else None,
        }
        if not ok and (not retry or not claim.needs_update):
            # Given up, skipped or unresolved: no update is pending any more. A first log
            # that will be retried writes the whole log with the newest contents anyway.
            values["needs_update"] = False
        if status == "waiting" and reason == "rate_limit":
            values["attempt"] = claim.attempt - 1  # waiting for room is not an attempt
        return now, values, (status, reason, message, next_at), ok, retry

    def hot_job(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """The group-commit job for the hot write ``name`` (``begin_step``, ``remember``,
        ``finish``) with these arguments, or None where the ledger has no such path
        (PostgreSQL, SQLite in memory). The gateway awaits it without a thread hop."""
        if self._hot is None:
            return None
        if name == "claim":
            now = kwargs.get("now") or self._now()
            select, params = hotsql.due_select(
                now, kwargs["limit"], tenant=kwargs.get("tenant"), apps=kwargs.get("apps"),
                event_pks=kwargs.get("event_pks"), modes=kwargs.get("modes"))
            return hotsql.claim(select, params, owner=kwargs["owner"], now=now,
                                expires=now + timedelta(seconds=kwargs["lease_seconds"]),
                                decrypt=self._cipher.decrypt)
        if name == "begin_step":
            claim, kind, key = args
            return hotsql.begin_step(claim, kind, key, self._now())
        if name == "remember":
            claim, record = args
            return hotsql.remember(claim, record, self._now())
        if name == "finish":
            claim, outcome = args
            started_at = kwargs.get("started_at")
            now, values, (status, reason, message, next_at), ok, retry = self._finish_values(
                claim, outcome, kwargs.get("now"))
            return hotsql.finish(claim, values, logged=ok, records=outcome.records, now=now,
                                 attempt={
                "delivery_id": claim.delivery_id, "attempt": claim.attempt, "fence": claim.fence,
                "started_at": started_at, "finished_at": now, "status": status,
                "reason": reason, "message": message, "retryable": retry,
                "next_attempt_at": next_at})
        return None

    def _run_hot(self, job: Any) -> None:
        assert self._hot is not None
        self._hot.run(job)

    def unpark(self, tenant: str, app: str, reason: str) -> int:
        """Release the (tenant, app)'s deliveries parked for ``reason`` (the connection
        was re-authorised, the daily limit reset, the configuration fixed): they are
        due again at once. Returns how many were released."""
        if reason not in PARKED_REASONS:
            raise ValueError(f"reason: must be one of {', '.join(PARKED_REASONS)}")
        d = t.deliveries
        with self._write() as conn:
            return int(conn.execute(d.update().where(
                d.c.tenant == tenant, d.c.app == app, d.c.status == "parked",
                d.c.reason == reason).values(
                status="pending", reason=None, retryable=False, next_attempt_at=None,
                updated_at=self._now())).rowcount)

    def release(self, claim: Claim) -> None:
        """Give the lease back untouched (shutdown): the delivery is due again at once."""
        with self._write() as conn:
            try:
                self._fenced(conn, claim, lease_owner=None, lease_expires=None)
            except LeaseLost:
                pass

    def choose(self, delivery_id: int, contact_ids: Sequence[str], *,
               notes: str | None = None) -> None:
        """A user's pick for an unresolved (or skipped) delivery: it becomes due again.

        Raises :class:`AlreadyLogged` for a delivery already logged or accepted.
        """
        values: dict[str, Any] = {"chosen_contact_ids": json.dumps(list(contact_ids)),
                                  "mode": "manual"}
        if notes is not None:
            values["notes_enc"] = self._cipher.encrypt(notes)
        self._reopen(delivery_id, **values)

    def requeue(self, delivery_id: int, *, mode: str, not_before: datetime | None = None) -> None:
        """Put a delivery not logged back to pending (digest, manual, a dead one re-queued),
        with a new deadline.

        Raises :class:`AlreadyLogged` for a delivery already logged or accepted.
        """
        self._reopen(delivery_id, mode=mode, not_before=not_before)

    def _reopen(self, delivery_id: int, **values: Any) -> None:
        d = t.deliveries
        with self._write() as conn:
            # The check and the change are one statement: two users cannot both pass it.
            done = conn.execute(d.update().where(
                d.c.id == delivery_id, d.c.status.not_in(FINAL_OK)).values(
                status="pending", updated_at=self._now(), next_attempt_at=None, retryable=False,
                deadline_at=self._now() + self.deadline, **values)).rowcount
            if done == 0:
                row = conn.execute(
                    sa.select(d.c.app, d.c.status).where(d.c.id == delivery_id)).first()
                if row is None:
                    raise KeyError(f"no delivery {delivery_id}")
                raise AlreadyLogged(f"delivery {delivery_id} is already {row.status} in {row.app}; "
                                    "it is not logged twice")

    def schedule(self, delivery_id: int, not_before: datetime | None) -> None:
        """Hold a pending delivery until ``not_before`` (delayed logging); None frees it."""
        with self._write() as conn:
            conn.execute(t.deliveries.update().where(t.deliveries.c.id == delivery_id).values(
                not_before=not_before, updated_at=self._now()))
