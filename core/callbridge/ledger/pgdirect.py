"""The hot writes of a PostgreSQL ledger on the driver directly: each one a single
statement on a connection in autocommit (its own transaction, committed when it
returns), where SQLAlchemy's path took a BEGIN, three to six statements and a
COMMIT, each a round trip and a compiled statement.

Fencing is unchanged: every write updates the delivery's row only where its fence
and lease owner are still the claim's (``WHERE id AND fence AND lease_owner``), in
the same statement as what it adds (a CTE: the step, record or attempt is inserted
only from the row the fenced update returned); no row updated is
:class:`~callbridge.ledger.types.LeaseLost`, and nothing was written.

Used by :class:`~callbridge.ledger.deliveries.DeliveriesMixin` and
:meth:`~callbridge.ledger.events.EventsMixin.load_event` on PostgreSQL, unless
``CALLBRIDGE_LEDGER_GROUP_COMMIT=0``. Connections: a small free list, one taken per
call (the gateway's threads and the lease renewer's run them at once).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from callbridge.ledger.types import Claim, DuplicateRecord, LeaseLost
from callbridge.models import Record

#: The fenced update every write starts with (its SET list comes first).
_FENCED = "WHERE id = %(did)s AND fence = %(fence)s AND lease_owner = %(owner)s"
_FENCE = f"{_FENCED} RETURNING id"

RENEW = f"UPDATE deliveries SET lease_expires = %(expires)s {_FENCE}"

BEGIN_STEP = (
    f"WITH f AS (UPDATE deliveries SET updated_at = %(now)s {_FENCE}), "
    "i AS (INSERT INTO steps (delivery_id, kind, step, fence, begun_at) "
    "SELECT id, %(kind)s::text, %(step)s::text, %(fence)s::integer, %(now)s::timestamptz "
    "FROM f ON CONFLICT DO NOTHING) "
    "SELECT count(*) FROM f")

# The record kept for the step already (if any) is read in the same statement: the
# same one again adds nothing, a different one is the caller's DuplicateRecord.
REMEMBER = (
    f"WITH f AS (UPDATE deliveries SET updated_at = %(now)s {_FENCE}), "
    "kept AS (SELECT app_id FROM records WHERE delivery_id = %(did)s AND kind = %(kind)s "
    "AND step = %(step)s), "
    "i AS (INSERT INTO records (delivery_id, kind, app_id, step, created_at) "
    "SELECT id, %(kind)s::text, %(app_id)s::text, %(step)s::text, %(now)s::timestamptz FROM f "
    "WHERE NOT EXISTS (SELECT 1 FROM kept)) "
    "SELECT (SELECT count(*) FROM f), (SELECT app_id FROM kept)")

# What a claim may take: Ledger._due_query's condition (with ix_deliveries_open's, so
# the planner may use that partial index); keep the two in step.
_DUE = ("(status = 'pending' OR status = 'waiting' AND (next_attempt_at IS NULL OR "
        "next_attempt_at <= %(now)s) OR needs_update IS TRUE AND status IN ('logged', 'accepted')) "
        "AND (lease_expires IS NULL OR lease_expires < %(now)s) "
        "AND NOT (not_before IS NOT NULL AND not_before > %(now)s) "
        "AND (status IN ('pending', 'waiting') OR needs_update IS TRUE)")
# One connection's claim: its own open rows, from ix_deliveries_open_connection
# (migration 0011). Otherwise `|| ''` keeps the tenant and app filters off the index
# choice (see Ledger._due_query).
_FILTERS = {"connection": " AND tenant = %(tenant)s AND app = %(app)s",
            "tenant": " AND (tenant || '') = %(tenant)s",
            "apps": " AND (app || '') = ANY(%(apps)s::text[])",
            "event_pks": " AND event_id = ANY(%(event_pks)s::integer[])",
            "modes": " AND mode = ANY(%(modes)s::text[])"}


def claim_statement(filters: Sequence[str]) -> str:
    """A claim in one statement: the due rows locked (skipping those another claim
    holds), leased with their fence raised, returned with their event's kind and
    revision, their records, the steps begun and the event's contents."""
    return (
        "WITH c AS (SELECT id FROM deliveries WHERE " + _DUE
        + "".join(_FILTERS[f] for f in filters)
        + " ORDER BY occurred_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED), "
        "u AS (UPDATE deliveries d SET lease_owner = %(owner)s, lease_expires = %(expires)s, "
        "fence = d.fence + 1, attempt = d.attempt + 1, "
        "first_attempt_at = COALESCE(d.first_attempt_at, %(now)s), updated_at = %(now)s "
        "FROM c WHERE d.id = c.id RETURNING d.id, d.event_id, d.tenant, d.app, d.fence, "
        "d.attempt, d.first_attempt_at, d.chosen_contact_ids, d.needs_update, d.notes_enc, "
        "d.mode, d.deadline_at, d.occurred_at) "
        "SELECT u.id, u.event_id, u.tenant, u.app, u.fence, u.attempt, u.first_attempt_at, "
        "u.chosen_contact_ids, u.needs_update, u.notes_enc, u.mode, u.deadline_at, "
        "e.kind, e.revision, "
        "(SELECT json_agg(json_build_array(r.kind, r.app_id, r.step) ORDER BY r.id) "
        "FROM records r WHERE r.delivery_id = u.id), "
        "(SELECT json_agg(json_build_array(s.kind, s.step)) FROM steps s "
        "WHERE s.delivery_id = u.id), e.content_enc, e.purged_at "
        "FROM u JOIN events e ON e.id = u.event_id ORDER BY u.occurred_at, u.id")


#: Contents of claimed events kept for their load at most (more: a shutdown left them).
_CONTENTS_KEPT = 4096


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


SELECT_RECORDS = "SELECT kind, step, app_id FROM records WHERE delivery_id = %(did)s"

LOAD_EVENT = "SELECT content_enc, purged_at FROM events WHERE id = %(pk)s"

#: The attempt's columns and their types (a parameter in a SELECT list needs its type).
_ATTEMPT = {"attempt": "integer", "fence": "integer", "started_at": "timestamptz",
            "finished_at": "timestamptz", "status": "text", "reason": "text", "message": "text",
            "retryable": "boolean", "next_attempt_at": "timestamptz"}


def finish_statement(columns: Sequence[str], *, logged: bool, records: bool) -> str:
    """The one statement of an outcome: the fenced update of the delivery (its
    ``needs_update`` read from the event under a shared row lock after a log, so a
    revision being stored commits first or waits), the attempt appended, and the
    records given (arrays ``rk``, ``rs``, ``ri``) not kept yet added, all from the
    fenced row. Its answer: (rows updated, whether a record given differs from the
    one kept for its step: then nothing is written)."""
    sets = [f"{c} = %(v_{c})s" for c in columns]
    ctes = []
    if logged:
        ctes.append("ev AS (SELECT revision FROM events WHERE id = %(event)s FOR SHARE)")
        sets.append("needs_update = COALESCE((SELECT revision FROM ev) <> %(revision)s, false)")
    if records:
        ctes += ["n AS (SELECT * FROM unnest(%(rk)s::text[], %(rs)s::text[], %(ri)s::text[]) "
                 "AS n(kind, step, app_id))",
                 "kept AS (SELECT kind, step, app_id FROM records WHERE delivery_id = %(did)s)",
                 "dup AS (SELECT 1 FROM n JOIN kept k ON k.kind = n.kind AND k.step = n.step "
                 "WHERE k.app_id <> n.app_id)"]
        ctes.append(f"f AS (UPDATE deliveries SET {', '.join(sets)} {_FENCED} "
                    "AND NOT EXISTS (SELECT 1 FROM dup) RETURNING id)")
        ctes.append("r AS (INSERT INTO records (delivery_id, kind, step, app_id, created_at) "
                    "SELECT f.id, n.kind, n.step, n.app_id, %(now)s::timestamptz FROM f, n "
                    "WHERE NOT EXISTS (SELECT 1 FROM kept k WHERE k.kind = n.kind "
                    "AND k.step = n.step))")
    else:
        ctes.append(f"f AS (UPDATE deliveries SET {', '.join(sets)} {_FENCE})")
    ctes.append(f"a AS (INSERT INTO attempts (delivery_id, {', '.join(_ATTEMPT)}) SELECT id, "
                + ", ".join(f"%(a_{c})s::{kind}" for c, kind in _ATTEMPT.items()) + " FROM f)")
    dup = "EXISTS (SELECT 1 FROM dup)" if records else "false"
    return "WITH " + ", ".join(ctes) + f" SELECT (SELECT count(*) FROM f), {dup}"


def new_records(delivery_id: int, recs: Sequence[Record],
                kept_ids: dict[tuple[str, str], str]) -> list[Record]:
    """The records of ``recs`` not kept yet, given the ids kept ((kind, step) -> id);
    :class:`DuplicateRecord` for one that differs from the record kept for its step."""
    new: dict[tuple[str, str], Record] = {}
    for rec in recs:
        key = (rec.kind, rec.step)
        kept = new[key].id if key in new else kept_ids.get(key)
        if kept is None:
            new[key] = rec
        elif kept != rec.id:
            raise DuplicateRecord(
                f"delivery {delivery_id}: a second {rec.kind!r} record for step "
                f"{rec.step!r}; the first one is kept")
    return list(new.values())


class Direct:
    """Single-statement hot writes on psycopg connections in autocommit."""

    def __init__(self, engine: Engine) -> None:
        import psycopg

        self._psycopg = psycopg
        self._idle = psycopg.pq.TransactionStatus.IDLE
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._args, self._kwargs = args, kwargs
        self._free: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._statements: dict[tuple[tuple[str, ...], bool, bool], str] = {}
        self._claims: dict[tuple[str, ...], str] = {}
        #: Contents read by claims, until their worker loads them (ledger.load_event).
        self._contents: dict[int, tuple[bytes | None, datetime | None]] = {}

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        with self._lock:
            conn = self._free.pop() if self._free else None
        if conn is None:
            conn = self._psycopg.connect(*self._args, **self._kwargs, autocommit=True)
        try:
            yield conn
        finally:
            idle = not conn.closed and conn.info.transaction_status == self._idle
            with self._lock:
                if idle and not self._closed:
                    self._free.append(conn)
                    conn = None
            if conn is not None:
                conn.close()  # broken, or interrupted mid-statement: not handed out again

    def _one(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        with self._conn() as conn:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            return row

    def forget_contents(self) -> None:
        """Drop the contents kept from claims (contents were erased)."""
        self._contents.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for conn in free:
            conn.close()

    @staticmethod
    def _fence(claim: Claim) -> dict[str, Any]:
        return {"did": claim.delivery_id, "fence": claim.fence, "owner": claim.owner}

    @staticmethod
    def _lost(claim: Claim) -> LeaseLost:
        return LeaseLost(f"delivery {claim.delivery_id}: fence {claim.fence} is no longer current")

    def claim(self, *, owner: str, limit: int, now: datetime, expires: datetime,
              decrypt: Callable[[bytes | None], str | None],
              where: dict[str, Any]) -> list[Claim]:
        """Lease up to ``limit`` due deliveries to ``owner`` (``where``: tenant, apps,
        event_pks, modes, each None for any), in one statement."""
        params = {"now": now, "limit": limit, "owner": owner, "expires": expires}
        apps = where.get("apps")
        if where.get("tenant") is not None and apps is not None and len(apps) == 1:
            params.update(tenant=where["tenant"], app=next(iter(apps)))
            where = {**where, "connection": True, "tenant": None, "apps": None}
        filters = tuple(f for f in _FILTERS if where.get(f) is not None)
        sql = self._claims.get(filters)
        if sql is None:
            sql = self._claims[filters] = claim_statement(filters)
        params.update({f: list(where[f]) if f != "tenant" else where[f]
                       for f in filters if f != "connection"})
        with self._conn() as conn:
            rows = conn.execute(sql, params).fetchall()
        if len(self._contents) > _CONTENTS_KEPT:
            self._contents.clear()  # claims never worked (a shutdown): not kept forever
        for r in rows:
            self._contents[r[1]] = (bytes(r[16]) if r[16] is not None else None, _utc(r[17]))
        return [Claim(
            delivery_id=r[0], event_pk=r[1], tenant=r[2], app=r[3], fence=r[4], attempt=r[5],
            first_attempt_at=_utc(r[6]) or now,
            chosen_contact_ids=tuple(json.loads(r[7])) if r[7] else None,
            needs_update=bool(r[8]), notes=decrypt(bytes(r[9]) if r[9] is not None else None),
            mode=r[10], deadline_at=_utc(r[11]), kind=r[12], revision=r[13], owner=owner,
            records=tuple(Record(kind=k, id=i, step=st) for k, i, st in r[14] or ()),
            begun=frozenset((k, st) for k, st in r[15] or ())) for r in rows]

    def due_connections(self, now: datetime) -> list[tuple[str, str]]:
        """Each (tenant, app) with a delivery a claim may take now, read without locking."""
        with self._conn() as conn:
            return [(tenant, app) for tenant, app in conn.execute(
                f"SELECT DISTINCT tenant, app FROM deliveries WHERE {_DUE}", {"now": now})]

    def renew(self, claim: Claim, expires: datetime) -> None:
        if self._one(RENEW, {**self._fence(claim), "expires": expires}) is None:
            raise self._lost(claim)

    def begin_step(self, claim: Claim, kind: str, key: str, now: datetime) -> None:
        row = self._one(BEGIN_STEP, {**self._fence(claim), "kind": kind, "step": key, "now": now})
        if row is None or row[0] != 1:
            raise self._lost(claim)

    def remember(self, claim: Claim, record: Record, now: datetime) -> str | None:
        """Keep ``record``; the id kept before for its step, if there was one."""
        row = self._one(REMEMBER, {**self._fence(claim), "kind": record.kind,
                                   "step": record.step, "app_id": record.id, "now": now})
        if row is None or row[0] != 1:
            raise self._lost(claim)
        kept: str | None = row[1]
        return kept

    def kept_records(self, delivery_id: int) -> dict[tuple[str, str], str]:
        """The delivery's records: (kind, step) -> id."""
        with self._conn() as conn:
            return {(k, s): i for k, s, i in conn.execute(SELECT_RECORDS, {"did": delivery_id})}

    def finish(self, claim: Claim, values: dict[str, Any],
               settled: tuple[str, str | None, str | None, datetime | None], retry: bool,
               started_at: datetime | None, *, logged: bool, records: Sequence[Record],
               now: datetime) -> None:
        """Write an outcome: ``values`` of the delivery (``needs_update`` is worked out
        here after a log), the attempt (``settled``: status, reason, message, next
        attempt; retried later?), the ``records`` not kept yet, in one statement. A
        record that differs from the one kept for its step fails the attempt for good,
        saying which step (:func:`new_records`), and adds nothing (a second statement)."""
        self._contents.pop(claim.event_pk, None)  # the attempt is over: read anew next time
        status, reason, message, next_at = settled
        attempt: dict[str, Any] = {
            "attempt": claim.attempt, "fence": claim.fence, "started_at": started_at,
            "finished_at": now, "status": status, "reason": reason, "message": message,
            "retryable": retry, "next_attempt_at": next_at}
        try:  # two records of one step given here: the general way below says which
            new = new_records(claim.delivery_id, records, {})
        except DuplicateRecord:
            new = None
        if new is not None:
            row = self._finish(claim, values, attempt, logged=logged, new=new, now=now)
            if row[0] == 1:
                return
            if not row[1]:
                raise self._lost(claim)
        # A record that differs from one kept: said in the attempt, nothing added.
        try:
            new_records(claim.delivery_id, records, self.kept_records(claim.delivery_id))
        except DuplicateRecord as exc:
            failed = {"status": "failed", "reason": "duplicate_record", "message": str(exc),
                      "retryable": False, "next_attempt_at": None}
            values, attempt = {**values, **failed}, {**attempt, **failed}
        if self._finish(claim, values, attempt, logged=logged, new=[], now=now)[0] != 1:
            raise self._lost(claim)

    def _finish(self, claim: Claim, values: dict[str, Any], attempt: dict[str, Any], *,
                logged: bool, new: Sequence[Record], now: datetime) -> tuple[Any, ...]:
        if logged:
            values = {k: v for k, v in values.items() if k != "needs_update"}
        columns = tuple(sorted(values))
        key = (columns, logged, bool(new))
        sql = self._statements.get(key)
        if sql is None:
            sql = self._statements[key] = finish_statement(columns, logged=logged,
                                                           records=bool(new))
        params = {**self._fence(claim), **{f"v_{c}": values[c] for c in columns},
                  **{f"a_{c}": attempt[c] for c in _ATTEMPT},
                  "event": claim.event_pk, "revision": claim.revision, "now": now,
                  "rk": [r.kind for r in new], "rs": [r.step for r in new],
                  "ri": [r.id for r in new]}
        row = self._one(sql, params)
        assert row is not None
        return row

    def load_event(self, event_pk: int) -> tuple[bytes | None, datetime | None]:
        """The event's contents (encrypted) and when they were purged: as read by the
        claim that took it, once (the revision the claim carries), else read now."""
        kept = self._contents.pop(event_pk, None)
        if kept is not None:
            return kept
        row = self._one(LOAD_EVENT, {"pk": event_pk})
        if row is None:
            raise LookupError(f"event {event_pk}: no such event")
        content = row[0]
        return (bytes(content) if content is not None else None), row[1]
