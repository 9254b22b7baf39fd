"""PostgreSQL's hot writes on the driver (callbridge.ledger.pgdirect): one statement
each, fenced like the SQLAlchemy path, leaving the rows that path leaves."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
import sqlalchemy as sa
from callbridge.events import parse_event
from callbridge.ledger import DuplicateRecord, LeaseLost, Ledger
from callbridge.models import Outcome, OutcomeStatus, Record
from callbridge.testing.postgres import create_database
from callbridge.workers.queue import due_connections

_SECRET_COLUMNS = {"source_id", "source_id_enc", "content_hash", "party_hash", "content_enc",
                   "notes_enc", "candidates_enc"}


def sms(i: int) -> Any:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550177"},
                        "sent_at": "2026-03-02T10:00:00Z", "body": "hello"})


def _work(ledger: Ledger) -> list[Any]:
    for i in range(4):
        ledger.store_event(sms(i), apps=["crm", "books"])
    ledger.store_event(sms(1), apps=["crm", "books"])  # a duplicate
    first, second, third, fourth, fifth = ledger.claim(owner="w", limit=5, lease_seconds=60)
    ledger.renew(first, 90)
    ledger.begin_step(first, "communication", "log")
    ledger.begin_step(first, "communication", "log")  # again: kept once
    ledger.remember(first, Record(kind="communication", id="c1", step="log"))
    ledger.remember(first, Record(kind="communication", id="c1", step="log"))  # the same: no-op
    with pytest.raises(DuplicateRecord):
        ledger.remember(first, Record(kind="communication", id="c2", step="log"))
    stale = dataclasses.replace(second, fence=second.fence - 1)
    for write in (lambda: ledger.renew(stale, 60), lambda: ledger.begin_step(stale, "a", "b"),
                  lambda: ledger.remember(stale, Record(kind="a", id="x")),
                  lambda: ledger.finish(stale, Outcome(status=OutcomeStatus.LOGGED))):
        with pytest.raises(LeaseLost):
            write()
    assert ledger.load_event(first.event_pk).key == sms(0).key
    ledger.finish(first, Outcome(status=OutcomeStatus.LOGGED,
                                 records=(Record(kind="communication", id="c1", step="log"),
                                          Record(kind="note", id="n1", step="note"))))
    ledger.begin_step(second, "communication", "log")  # claimed again below with both
    ledger.remember(second, Record(kind="communication", id="c9", step="log"))
    ledger.finish(second, Outcome(status=OutcomeStatus.WAITING, reason="rate_limit",
                                  next_attempt_at=ledger.clock.now()))
    ledger.finish(third, Outcome(status=OutcomeStatus.FAILED, reason="bad_request",
                                 message="the app refused it"))
    ledger.remember(fourth, Record(kind="log", id="l1"))
    ledger.finish(fourth, Outcome(status=OutcomeStatus.LOGGED,  # a second record of a step
                                  records=(Record(kind="log", id="l2"),)))
    # A newer revision of the fifth's event arrived while it was being written.
    ledger.store_event(sms(2).model_copy(update={"body": "changed"}), apps=["crm", "books"])
    ledger.finish(fifth, Outcome(status=OutcomeStatus.LOGGED))
    with pytest.raises(LeaseLost):  # finished: the lease is given back
        ledger.finish(first, Outcome(status=OutcomeStatus.LOGGED))
    return ledger.claim(owner="w2", limit=8, lease_seconds=60)


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for table in ("events", "deliveries", "records", "steps", "attempts"):
                columns = [c["name"] for c in sa.inspect(conn).get_columns(table)
                           if c["name"] not in _SECRET_COLUMNS]
                out[table] = [tuple(r) for r in conn.exec_driver_sql(
                    f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1, 2")]
            return out
    finally:
        engine.dispose()


def test_the_direct_path_writes_the_rows_the_sqlalchemy_path_writes(
        postgres_server: str, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same work, stale fences and duplicate records included, through both paths
    leaves the same rows."""
    from callbridge.testing.clock import FakeClock

    kept, urls, claims, dues = {}, {}, {}, {}
    for name, direct in (("direct", "1"), ("plain", "0")):
        monkeypatch.setenv("CALLBRIDGE_LEDGER_GROUP_COMMIT", direct)
        url = urls[name] = create_database(postgres_server, f"pgdirect_{name}_{os.getpid()}")
        ledger = Ledger(url, secret_key=key, clock=FakeClock())
        try:
            ledger.migrate()
            assert (ledger._direct is not None) == (direct == "1")
            claims[name] = _work(ledger)
            ledger.release(claims[name][0])  # due again: the dispatcher finds its connection
            dues[name] = due_connections(ledger, ledger.clock.now())
        finally:
            ledger.close()
        kept[name] = _rows(url)
    for table in kept["direct"]:
        assert kept["direct"][table] == kept["plain"][table], table
    assert dues["direct"] == dues["plain"] == [("acme", claims["direct"][0].app)]
    assert claims["direct"] == claims["plain"]  # what a claim returns, records and steps begun
    again = {c.delivery_id: c for c in claims["direct"]}
    assert len(again) == 5
    resumed = next(c for c in again.values() if c.records)
    assert [r.id for r in resumed.records] == ["c9"]
    assert resumed.begun == {("communication", "log")}
    assert resumed.attempt == 1  # waiting for the rate limit was not an attempt
    assert len(kept["direct"]["attempts"]) == 5
    assert sum("duplicate_record" in row for row in kept["direct"]["attempts"]) == 1
    engine = sa.create_engine(urls["direct"])
    try:
        with engine.connect() as conn:  # the revision stored meanwhile asks for an update
            assert conn.exec_driver_sql(
                "SELECT count(*) FROM deliveries WHERE needs_update").scalar_one() == 1
    finally:
        engine.dispose()


def test_a_failed_statement_leaves_its_connection_usable_and_close_closes_them(
        postgres_server: str, key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.delenv("CALLBRIDGE_LEDGER_GROUP_COMMIT", raising=False)
    ledger = Ledger(create_database(postgres_server, f"pgdirect_error_{os.getpid()}"),
                    secret_key=key)
    direct = ledger._direct
    assert direct is not None
    try:
        with pytest.raises(psycopg.errors.DivisionByZero):
            direct._one("SELECT 1 / 0", {})
        (conn,) = direct._free  # no transaction left open: handed out again
        assert direct._one("SELECT 2", {}) == (2,)
        assert direct._free == [conn]
    finally:
        ledger.close()
    assert direct._free == [] and conn.closed


def test_a_connections_claim_reads_its_own_open_deliveries_from_their_index(
        postgres_server: str, key: str) -> None:
    """One connection's claim (the workers' kind) reads ix_deliveries_open_connection,
    not every open delivery of every connection (a backlog's worth per claim)."""
    from datetime import UTC, datetime, timedelta

    from callbridge.ledger.pgdirect import claim_statement

    ledger = Ledger(create_database(postgres_server, f"pgdirect_plan_{os.getpid()}"),
                    secret_key=key)
    try:
        ledger.migrate()
        for i in range(40):
            ledger.store_event(sms(i).model_copy(update={"tenant": f"t{i % 4}"}), apps=["crm"])
        now = datetime.now(UTC)
        with ledger.engine.begin() as conn:  # a plan that could sort or scan must not
            conn.exec_driver_sql("ANALYZE deliveries")
            for setting in ("enable_seqscan", "enable_sort", "enable_bitmapscan"):
                conn.exec_driver_sql(f"SET LOCAL {setting} = off")
            plan = "\n".join(r[0] for r in conn.exec_driver_sql(
                "EXPLAIN " + claim_statement(("connection",)),
                {"now": now, "limit": 2, "owner": "w", "expires": now + timedelta(seconds=30),
                 "tenant": "t1", "app": "crm"}))
        scan = plan.split("CTE u")[0]
        assert "Index Scan using ix_deliveries_open_connection" in scan, plan
        assert "Seq Scan" not in scan and "Sort" not in scan.split("CTE c")[1], plan
        claimed = ledger.claim(owner="w", limit=2, lease_seconds=30, tenant="t1", apps=["crm"])
        assert [(c.tenant, c.app) for c in claimed] == [("t1", "crm")] * 2
    finally:
        ledger.close()
