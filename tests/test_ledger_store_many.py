"""``Ledger.store_events``: many events in one call (the server's requests that arrive
together) end as they would one call each; on PostgreSQL the new ones share one
transaction, and concurrent calls with the same events store each event once."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from callbridge.events import parse_event
from callbridge.ledger import Ledger

from tests.test_ledger_core import at_once


def call(i: int, *, tenant: str = "acme", **over: Any) -> Any:
    data = {"kind": "call", "id": f"c-{i}", "tenant": tenant, "direction": "inbound",
            "external": {"number": "+12125550177"}, "internal": {"extension": "101"},
            "started_at": "2026-03-02T10:00:00Z", "answered_at": "2026-03-02T10:00:05Z",
            "ended_at": "2026-03-02T10:03:00Z", "outcome": "completed"}
    data.update(over)
    return parse_event(data)


def test_a_batch_ends_as_one_call_per_event_would(ledger: Ledger) -> None:
    known = ledger.store_event(call(1), apps=["crm"])
    noted = call(2, notes="the first words")
    ledger.store_event(call(2), apps=["crm"])
    batch = [(call(3), ["crm", "clio"]), (call(1), ["crm"]), (noted, ["crm"]),
             (call(3), ["crm", "clio"]), (call(3, tenant="other"), [])]
    stored = ledger.store_events(batch)
    assert [s.status for s in stored] == ["new", "duplicate", "revision", "duplicate", "new"]
    assert stored[1].event_pk == known.event_pk
    assert stored[0].event_pk == stored[3].event_pk != stored[4].event_pk
    assert ledger.load_event(stored[2].event_pk).notes == "the first words"  # type: ignore[union-attr]
    assert ledger.load_event(stored[0].event_pk) == call(3)
    apps = sorted((v.event_pk, v.app) for v in ledger.history())
    assert apps == sorted([(known.event_pk, "crm"), (stored[2].event_pk, "crm"),
                           (stored[0].event_pk, "clio"), (stored[0].event_pk, "crm")])
    assert {v.status for v in ledger.history()} == {"pending"}
    claimed = ledger.claim(owner="w", limit=10, lease_seconds=60)
    assert sorted((c.event_pk, c.app) for c in claimed) == apps


def test_on_postgresql_the_new_events_share_one_transaction(ledger: Ledger) -> None:
    if not ledger._postgres:
        return  # SQLite's file ledger commits them in one group (test_ledger_group_commit)
    ledger.store_event(call(0), apps=["crm"])
    begun: list[int] = []
    sa.event.listen(ledger.engine, "begin", lambda conn: begun.append(1))
    stored = ledger.store_events([(call(i), ["crm"]) for i in range(20)])
    assert [s.status for s in stored] == ["duplicate"] + ["new"] * 19
    assert len(begun) == 2  # the new ones together, the known one alone


def test_concurrent_batches_of_the_same_events_store_each_once(ledger: Ledger) -> None:
    results: list[list[str]] = []
    at_once(6, lambda i: results.append([s.status for s in ledger.store_events(
        [(call(n), ["crm"]) for n in range(10)])]))
    for n in range(10):
        assert sorted(r[n] for r in results) == ["duplicate"] * 5 + ["new"]
    assert len(ledger.history()) == 10
