"""The indexes history and claims need, checked in the databases' own query plans.

History (newest first) must read an index backwards and stop at its limit, not sort
every delivery; a claim must find updates of logged events through their own index,
not read every logged delivery while it holds the write lock. Runs on SQLite and
PostgreSQL (``ledger_url``); on PostgreSQL sequential scans, sorts and bitmap scans are
switched off for the plan, so a plan that still scans or sorts shows an index is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from callbridge.ledger import tables as t
from sqlalchemy import event

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@contextmanager
def _explained(engine: Any, prefix: str) -> Iterator[None]:
    def rewrite(conn: Any, cursor: Any, statement: str, params: Any, context: Any,
                executemany: bool) -> tuple[str, Any]:
        return prefix + statement, params

    event.listen(engine, "before_cursor_execute", rewrite, retval=True)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", rewrite)


def plan(ledger: Any, query: Any) -> str:
    """The database's plan for ``query``, as the ledger runs it (same binds)."""
    sqlite = ledger.engine.dialect.name == "sqlite"
    with ledger.engine.connect() as conn:
        if not sqlite:
            # A plan's costs depend on the rows and statistics a test happens to leave;
            # with scans, sorts and bitmaps priced out, only a missing index can still
            # make the planner scan or sort (it does so when there is no other way).
            for method in ("seqscan", "sort", "bitmapscan"):
                conn.exec_driver_sql(f"SET LOCAL enable_{method} = off")
        with _explained(ledger.engine, "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "):
            rows = conn.execute(query).all()
        conn.rollback()
    return "\n".join(str(row[-1]) for row in rows)


def test_history_reads_the_newest_deliveries_from_an_index_without_sorting(ledger: Any) -> None:
    everyone = plan(ledger, ledger._views_query([], 100))
    one_firm = plan(ledger, ledger._views_query([t.deliveries.c.tenant == "acme"], 100))
    if ledger.engine.dialect.name == "sqlite":
        assert "SCAN deliveries USING INDEX ix_deliveries_updated" in everyone, everyone
        assert "SEARCH deliveries USING INDEX ix_deliveries_tenant_updated" in one_firm, one_firm
        for text in (everyone, one_firm):
            assert "TEMP B-TREE FOR ORDER BY" not in text, text
    else:
        assert "Index Scan Backward using ix_deliveries_updated" in everyone, everyone
        assert "Index Scan Backward using ix_deliveries_tenant_updated" in one_firm, one_firm
        for text in (everyone, one_firm):
            assert "Sort" not in text and "Seq Scan" not in text, text


def test_a_claim_finds_updates_of_logged_events_without_reading_every_logged_one(
        ledger: Any) -> None:
    for filters in ({}, {"tenant": "acme", "apps": ["crm"]}):
        text = plan(ledger, ledger._due_query(now=NOW, limit=10, **filters))
        if ledger.engine.dialect.name == "sqlite":
            assert "ix_deliveries_needs_update (needs_update=? AND status=?)" in text, text
            searches = [line for line in text.splitlines() if "deliveries" in line]
            # Every branch is an index search (no SCAN of the table, no search of a
            # status by itself beyond pending and waiting).
            assert all(line.startswith("SEARCH deliveries USING INDEX") for line in searches), text
            assert sum("ix_deliveries_due (status=?)" in line for line in searches) <= 2, text
        else:
            # The partial index of open deliveries, or the states' indexes for each branch.
            assert "ix_deliveries_open" in text or "Index Cond: ((needs_update = true)" in text, text
            assert "Seq Scan" not in text, text


def test_the_indexes_come_from_the_migrations(ledger: Any) -> None:
    from sqlalchemy import inspect

    names = {ix["name"] for ix in inspect(ledger.engine).get_indexes("deliveries")}
    assert {"ix_deliveries_updated", "ix_deliveries_tenant_updated",
            "ix_deliveries_needs_update"} <= names


def test_the_sqlite_hot_paths_claim_reads_the_open_deliveries_in_order(ledger: Any) -> None:
    """On a SQLite file claims run as plain SQL on the driver (ledger.hotsql.due_select)."""
    import sqlite3

    from callbridge.ledger import hotsql

    if ledger.engine.dialect.name != "sqlite":
        return
    db = sqlite3.connect(ledger.engine.url.database)
    try:
        def plan_of(**filters: Any) -> str:
            sql, params = hotsql.due_select(NOW, 10, **filters)
            return "\n".join(str(row[-1]) for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))

        for filters in ({}, {"tenant": "acme", "apps": ["crm"]}):
            # The open deliveries in order, up to the limit: no sort of every due one,
            # with or without statistics.
            text = plan_of(**filters)
            assert text == "SCAN deliveries USING INDEX ix_deliveries_open", text
        # Given events (ingest works its own): only their deliveries are read.
        text = plan_of(event_pks=[1, 2])
        assert "SEARCH deliveries USING INDEX ix_deliveries_event (event_id=?)" in text, text
    finally:
        db.close()


def _seed_logged(ledger: Any, n: int) -> None:
    """``n`` deliveries already logged, as a ledger that has run a while holds them."""
    from datetime import timedelta

    events = [{"id": i, "tenant": f"t{i % 5}", "source": "pbx", "kind": "call",
               "source_id": f"e-{i}", "occurred_at": NOW - timedelta(minutes=i),
               "received_at": NOW, "revision": 1, "content_hash": "0" * 64} for i in range(1, n + 1)]
    deliveries = [{"id": i, "event_id": i, "tenant": f"t{i % 5}", "app": "crm",
                   "occurred_at": NOW - timedelta(minutes=i), "mode": "auto", "status": "logged",
                   "retryable": False, "needs_update": False, "fence": 1, "attempt": 1,
                   "updated_at": NOW - timedelta(minutes=i)} for i in range(1, n + 1)]
    with ledger.engine.begin() as conn:
        conn.execute(t.events.insert(), events)
        conn.execute(t.deliveries.insert(), deliveries)
    with ledger.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def test_with_statistics_a_claim_still_reads_only_open_deliveries(ledger: Any) -> None:
    """After ANALYZE, with nearly every delivery logged, the state columns look unselective;
    the partial index of open deliveries keeps the claim off the logged rows."""
    _seed_logged(ledger, 400)
    text = plan(ledger, ledger._due_query(now=NOW, limit=10))
    if ledger.engine.dialect.name == "sqlite":
        scans = [line for line in text.splitlines() if line.startswith("SCAN deliveries")]
        assert all("USING INDEX ix_deliveries_open" in line for line in scans), text
        import sqlite3

        from callbridge.ledger import hotsql

        db = sqlite3.connect(ledger.engine.url.database)
        try:
            sql, params = hotsql.due_select(NOW, 10)
            hot = "\n".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql, params))
        finally:
            db.close()
        assert "SCAN deliveries USING INDEX ix_deliveries_open" in hot, hot
    else:
        assert "Seq Scan" not in text, text
    assert ledger.claim(owner="w", limit=10, lease_seconds=30, now=NOW) == []
