"""The indexes history and claims need, checked in the databases' own query plans.

History (newest first) must read an index backwards and stop at its limit, not sort
every delivery; a claim must find updates of logged events through their own index,
not read every logged delivery while it holds the write lock. Runs on SQLite and
PostgreSQL (``ledger_url``); on PostgreSQL sequential scans are switched off for the
plan, so a plan that still scans shows an index is missing.
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
            conn.exec_driver_sql("SET enable_seqscan = off")
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
            assert "Index Cond: ((needs_update = true)" in text, text
            assert "ix_deliveries_needs_update" in text and "Seq Scan" not in text, text


def test_the_indexes_come_from_the_migrations(ledger: Any) -> None:
    from sqlalchemy import inspect

    names = {ix["name"] for ix in inspect(ledger.engine).get_indexes("deliveries")}
    assert {"ix_deliveries_updated", "ix_deliveries_tenant_updated",
            "ix_deliveries_needs_update"} <= names


def test_the_sqlite_hot_paths_claim_uses_the_same_indexes(ledger: Any) -> None:
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
            text = plan_of(**filters)
            assert "ix_deliveries_needs_update (needs_update=? AND status=?)" in text, text
            searches = [line for line in text.splitlines() if "deliveries" in line]
            assert all(line.startswith("SEARCH deliveries USING INDEX") for line in searches), text
        # Given events (ingest works its own): only their deliveries are read.
        text = plan_of(event_pks=[1, 2])
        assert "SEARCH deliveries USING INDEX ix_deliveries_event (event_id=?)" in text, text
    finally:
        db.close()
