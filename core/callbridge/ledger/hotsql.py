"""The hot writes as plain SQL for :class:`callbridge.ledger.hot.GroupWriter`.

Each function returns a job: ``job(cursor)`` runs inside a group's transaction
(in a savepoint of its own) and does what the SQLAlchemy method of the same name
does, statement for statement (``deliveries.py``, ``events.py``); the two are
kept in step by the ledger's tests, which run with and without this path.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from callbridge.ledger.hot import Job, read_time, sql_value, sql_values
from callbridge.ledger.types import Claim, DuplicateRecord, LeaseLost
from callbridge.models import Record

_FENCE = " WHERE id = ? AND fence = ? AND lease_owner = ?"
_SELECT_RECORD = "SELECT app_id FROM records WHERE delivery_id = ? AND kind = ? AND step = ?"
_INSERT_RECORD = ("INSERT INTO records (delivery_id, kind, app_id, step, created_at) "
                  "VALUES (?, ?, ?, ?, ?)")
_INSERT_NEW_RECORD = _INSERT_RECORD + " ON CONFLICT (delivery_id, kind, step) DO NOTHING"
_INSERT_STEP = ("INSERT INTO steps (delivery_id, kind, step, fence, begun_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING")
_ATTEMPT_COLUMNS = ("delivery_id", "attempt", "fence", "started_at", "finished_at", "status",
                    "reason", "message", "retryable", "next_attempt_at")
_INSERT_ATTEMPT = (f"INSERT INTO attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * len(_ATTEMPT_COLUMNS))})")
#: After a log: an update is still needed if a newer revision arrived meanwhile.
_NEEDS_UPDATE = ("needs_update = ((SELECT revision FROM events WHERE events.id = "
                 "deliveries.event_id) != ?)")


def fenced(cur: sqlite3.Cursor, claim: Claim, sets: str, params: Sequence[Any]) -> None:
    """``UPDATE deliveries SET <sets>`` under the claim's fence; :class:`LeaseLost` if
    the delivery is no longer this claim's."""
    cur.execute("UPDATE deliveries SET " + sets + _FENCE,
                (*params, claim.delivery_id, claim.fence, claim.owner))
    if cur.rowcount != 1:
        raise LeaseLost(f"delivery {claim.delivery_id}: fence {claim.fence} is no longer current")


def new_records(cur: sqlite3.Cursor, delivery_id: int, recs: Sequence[Record]) -> list[Record]:
    """The records not kept yet; :class:`DuplicateRecord` for one that differs from the
    record kept for its (kind, step)."""
    new: dict[tuple[str, str], Record] = {}
    for rec in recs:
        key = (rec.kind, rec.step)
        if key in new:
            kept: str | None = new[key].id
        else:
            row = cur.execute(_SELECT_RECORD, (delivery_id, rec.kind, rec.step)).fetchone()
            kept = None if row is None else row[0]
        if kept is None:
            new[key] = rec
        elif kept != rec.id:
            raise DuplicateRecord(
                f"delivery {delivery_id}: a second {rec.kind!r} record for step "
                f"{rec.step!r}; the first one is kept")
    return list(new.values())


def insert_records(cur: sqlite3.Cursor, delivery_id: int, recs: Sequence[Record],
                   now: datetime) -> None:
    if recs:
        at = sql_value(now)
        cur.executemany(_INSERT_RECORD, [(delivery_id, r.kind, r.id, r.step, at) for r in recs])


def remember(claim: Claim, record: Record, now: datetime) -> Job:
    at = sql_value(now)
    row = (claim.delivery_id, record.kind, record.id, record.step, at)

    def job(cur: sqlite3.Cursor) -> None:
        fenced(cur, claim, "updated_at = ?", (at,))
        # Usually new: inserted in one statement; one kept already is read only then.
        if cur.execute(_INSERT_NEW_RECORD, row).rowcount == 0:
            new_records(cur, claim.delivery_id, [record])  # the same id, or DuplicateRecord
    return job


def begin_step(claim: Claim, kind: str, key: str, now: datetime) -> Job:
    def job(cur: sqlite3.Cursor) -> None:
        fenced(cur, claim, "updated_at = ?", (sql_value(now),))
        cur.execute(_INSERT_STEP, (claim.delivery_id, kind, key, claim.fence, sql_value(now)))
    return job


def finish(claim: Claim, values: Mapping[str, Any], *, logged: bool, records: Sequence[Record],
           attempt: Mapping[str, Any], now: datetime) -> Job:
    """The outcome made current (``values``), records the log returned that were not
    remembered, and the attempt appended; a second, different record for a step ends
    the delivery as failed (``duplicate_record``), as the SQLAlchemy path does."""
    sets = _sets(tuple(values))
    params = list(sql_values(list(values.values())))
    if logged:
        sets += ", " + _NEEDS_UPDATE
        params.append(claim.revision)

    def job(cur: sqlite3.Cursor) -> None:
        row = dict(attempt)
        fenced(cur, claim, sets, params)
        try:
            insert_records(cur, claim.delivery_id,
                           new_records(cur, claim.delivery_id, records), now)
        except DuplicateRecord as exc:
            row.update(status="failed", reason="duplicate_record", message=str(exc),
                       retryable=False, next_attempt_at=None)
            cur.execute("UPDATE deliveries SET status = ?, reason = ?, message = ?, retryable = 0, "
                        "next_attempt_at = NULL WHERE id = ?",
                        ("failed", "duplicate_record", str(exc), claim.delivery_id))
        cur.execute(_INSERT_ATTEMPT, sql_values([row[c] for c in _ATTEMPT_COLUMNS]))
    return job


@functools.lru_cache(maxsize=64)
def _insert(table: str, columns: tuple[str, ...], tail: str = "") -> str:
    """An INSERT of ``columns`` (the same few shapes every time: made once each)."""
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}){tail}")


@functools.lru_cache(maxsize=64)
def _sets(columns: tuple[str, ...]) -> str:
    return ", ".join(f"{column} = ?" for column in columns)


def store_new(ident: Mapping[str, Any], event_row: Mapping[str, Any],
              deliveries: Sequence[Mapping[str, Any]]) -> Job:
    """A new event and its deliveries; the job returns the event's key, or None when
    the event is known already (the caller then stores it the general way)."""
    insert_event = _insert("events", (*ident, *event_row),
                           " ON CONFLICT (tenant, source, kind, source_id) DO NOTHING")
    event_params = sql_values([*ident.values(), *event_row.values()])
    delivery_columns = list(deliveries[0]) if deliveries else []
    insert_delivery = _insert("deliveries", tuple(delivery_columns))
    rows = [sql_values([d[c] for c in delivery_columns]) for d in deliveries]
    pk_at = delivery_columns.index("event_id") if deliveries else 0

    def job(cur: sqlite3.Cursor) -> int | None:
        if cur.execute(insert_event, event_params).rowcount == 0:
            return None  # known already (its identity's row is there)
        pk = cur.lastrowid
        if rows:
            cur.executemany(insert_delivery,
                            [(*r[:pk_at], pk, *r[pk_at + 1:]) for r in rows])
        return pk
    return job


def claim(select: str, params: Mapping[str, Any] | Sequence[Any], *, owner: str, expires: datetime, now: datetime,
          decrypt: Callable[[bytes | None], str | None]) -> Job:
    """A claim (``Ledger.claim``): the due deliveries ``select`` finds are leased to
    ``owner``, each with its fence raised; the job returns their :class:`Claim`\\ s."""
    def job(cur: sqlite3.Cursor) -> list[Claim]:
        cur.execute(select, params)
        columns = [d[0] for d in cur.description]
        rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
        if not rows:
            return []
        # Records and begun steps are written under a claim's fence only: a delivery
        # never claimed (fence 0) has none, so only the others are looked up.
        seen = [r["id"] for r in rows if r["fence"]]
        marks = ", ".join("?" * len(seen))
        event_ids = sorted({r["event_id"] for r in rows})
        kinds = {pk: (kind, revision) for pk, kind, revision in cur.execute(
            f"SELECT id, kind, revision FROM events WHERE id IN ({', '.join('?' * len(event_ids))})",
            event_ids)}
        recs: dict[int, list[Record]] = {}
        begun: dict[int, set[tuple[str, str]]] = {}
        if seen:
            for did, kind, app_id, step in cur.execute(
                    f"SELECT delivery_id, kind, app_id, step FROM records WHERE delivery_id IN "
                    f"({marks}) ORDER BY id", seen):
                recs.setdefault(did, []).append(Record(kind=kind, id=app_id, step=step))
            for did, kind, step in cur.execute(
                    f"SELECT delivery_id, kind, step FROM steps WHERE delivery_id IN ({marks})",
                    seen):
                begun.setdefault(did, set()).add((kind, step))
        at, until = sql_value(now), sql_value(expires)
        cur.executemany(
            "UPDATE deliveries SET lease_owner = ?, lease_expires = ?, fence = ?, attempt = ?, "
            "first_attempt_at = ?, updated_at = ? WHERE id = ?",
            [(owner, until, r["fence"] + 1, r["attempt"] + 1, r["first_attempt_at"] or at, at,
              r["id"]) for r in rows])
        claims = []
        for r in rows:
            first = read_time(r["first_attempt_at"]) or now
            chosen = r["chosen_contact_ids"]
            claims.append(Claim(
                delivery_id=r["id"], event_pk=r["event_id"], tenant=r["tenant"], app=r["app"],
                kind=kinds[r["event_id"]][0], revision=kinds[r["event_id"]][1],
                fence=r["fence"] + 1, attempt=r["attempt"] + 1, first_attempt_at=first,
                records=tuple(recs.get(r["id"], ())),
                chosen_contact_ids=tuple(json.loads(chosen)) if chosen else None,
                needs_update=bool(r["needs_update"]), notes=decrypt(r["notes_enc"]),
                mode=r["mode"], owner=owner, deadline_at=read_time(r["deadline_at"]),
                begun=frozenset(begun.get(r["id"], ()))))
        return claims
    return job


_DELIVERY_COLUMNS = (
    "id", "event_id", "tenant", "app", "occurred_at", "mode", "status", "reason", "message",
    "retryable", "next_attempt_at", "not_before", "needs_update", "notes_enc",
    "chosen_contact_ids", "candidates_enc", "lease_owner", "lease_expires", "fence", "attempt",
    "first_attempt_at", "updated_at", "deadline_at")
#: ``Ledger._due_query`` in SQLite's SQL (the same conditions; the plans of both are
#: checked in tests/test_ledger_indexes.py). ``{source}``: the table, or the table read
#: through ix_deliveries_open (see :func:`due_select`).
_DUE = (f"SELECT {', '.join(_DELIVERY_COLUMNS)} FROM {{source}} WHERE "
        "(status = 'pending' OR status = 'waiting' AND (next_attempt_at IS NULL OR "
        "next_attempt_at <= :now) OR needs_update IS 1 AND status IN ('logged', 'accepted')) "
        "AND (lease_expires IS NULL OR lease_expires < :now) "
        "AND NOT (not_before IS NOT NULL AND not_before > :now) "
        # ix_deliveries_open's condition (migration 0008), so the planner may use it.
        "AND (status IN ('pending', 'waiting') OR needs_update IS 1)")


def due_select(now: datetime, limit: int, *, tenant: str | None = None,
               apps: Sequence[str] | None = None, event_pks: Sequence[int] | None = None,
               modes: Sequence[str] | None = None) -> tuple[str, dict[str, Any]]:
    """The claim's SELECT and its parameters (named).

    A claim of whatever is due reads the open deliveries in order through the
    partial index of open deliveries (migration 0008) and stops at ``limit``, as
    SQLite plans it once it has statistics: without them it would read every due
    delivery through the states' indexes and sort them all, each claim costing the
    whole backlog (2,000 pending deliveries: 2 ms a claim instead of 0.1 ms).
    A claim of given events reads those events' deliveries only.
    """
    source = "deliveries" if event_pks is not None else "deliveries INDEXED BY ix_deliveries_open"
    sql = [_DUE.format(source=source)]
    params: dict[str, Any] = {"now": sql_value(now), "limit": limit}

    def among(column: str, name: str, values: Sequence[Any]) -> None:
        names = [f"{name}{i}" for i in range(len(values))]
        params.update(zip(names, values, strict=True))
        sql.append(f" AND {column} IN ({', '.join(':' + n for n in names)})" if names
                   else " AND 0")

    if tenant is not None:  # `|| ''`: see Ledger._due_query
        sql.append(" AND (tenant || '') = :tenant")
        params["tenant"] = tenant
    if apps is not None:
        among("(app || '')", "app", list(apps))
    if event_pks is not None:
        among("event_id", "event", list(event_pks))
    if modes is not None:
        among("mode", "mode", list(modes))
    sql.append(" ORDER BY occurred_at, id LIMIT :limit")
    return "".join(sql), params
