"""Events stored by one call to ``Ledger.store_events`` on PostgreSQL: the new ones in one
transaction, leaving the rows that storing them one by one leaves."""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.testing.clock import FakeClock
from callbridge.testing.postgres import create_database

_SECRET_COLUMNS = {"source_id", "source_id_enc", "content_hash", "party_hash", "content_enc",
                   "notes_enc", "candidates_enc"}


def sms(i: int, body: str = "hello") -> Any:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550177"},
                        "sent_at": f"2026-03-02T10:0{i}:00Z", "body": body})


#: One batch: new events, the same event twice, a revision and a duplicate of events known.
BATCH = [(sms(1), ["crm", "books"]), (sms(2), ["crm"]), (sms(1), ["crm", "books"]),
         (sms(0, "changed"), ["crm"]), (sms(3), []), (sms(4), ["crm"]), (sms(4), ["crm"])]


def _rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            out = {}
            for table in ("events", "event_revisions", "deliveries"):
                # Keys left out: a conflicting insert takes a number of the sequence too.
                columns = [c["name"] for c in sa.inspect(conn).get_columns(table)
                           if c["name"] not in _SECRET_COLUMNS | {"id", "event_id"}]
                out[table] = [tuple(r) for r in conn.exec_driver_sql(
                    f"SELECT {', '.join(columns)} FROM {table} ORDER BY id")]
            out["links"] = [tuple(r) for r in conn.exec_driver_sql(
                "SELECT e.occurred_at, d.app FROM deliveries d JOIN events e ON e.id = d.event_id "
                "ORDER BY d.id")]
            return out
    finally:
        engine.dispose()


def test_new_events_stored_together_leave_the_rows_stored_one_by_one(
        postgres_server: str, key: str) -> None:
    kept, statuses = {}, {}
    for name in ("together", "one_by_one"):
        url = create_database(postgres_server, f"together_{name}_{os.getpid()}")
        ledger = Ledger(url, secret_key=key, clock=FakeClock())
        try:
            ledger.migrate()
            ledger.store_event(sms(0), apps=["crm"])  # known before the batch
            commits: list[None] = []
            sa.event.listen(ledger.engine, "commit", commits.append)
            if name == "together":
                stored = ledger.store_events(BATCH)
            else:
                stored = [ledger.store_event(e, apps=apps) for e, apps in BATCH]
            statuses[name] = [(s.status, s.revision) for s in stored]
            if name == "together":  # the four new events in one commit; then one each
                assert len(commits) == 1 + 3  # for the duplicates and the revision
                assert stored[0].event_pk == stored[2].event_pk
        finally:
            ledger.close()
        kept[name] = _rows(url)
    assert statuses["together"] == statuses["one_by_one"] == [
        ("new", 1), ("new", 1), ("duplicate", 1), ("revision", 2), ("new", 1), ("new", 1),
        ("duplicate", 1)]
    for table in kept["together"]:
        assert kept["together"][table] == kept["one_by_one"][table], table
    assert len(kept["together"]["deliveries"]) == 1 + 2 + 1 + 1
