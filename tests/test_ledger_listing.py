"""The ledger's pages for the operator API, on SQLite and PostgreSQL: events and
deliveries newest first after a cursor, filtered and scoped to tenants, and re-queueing
only from dead or failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.models import Outcome, OutcomeStatus

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def sms(i: int, tenant: str) -> Any:
    return parse_event({"kind": "sms", "id": f"s-{i:04d}", "tenant": tenant,
                        "direction": "inbound", "external": {"number": "+12125550177"},
                        "sent_at": (T0 + timedelta(minutes=i)).isoformat(), "body": "hello"})


def settle(ledger: Ledger, pk: int, status: OutcomeStatus, app: str = "crm") -> None:
    (claim,) = ledger.claim(owner="t", limit=1, lease_seconds=30, event_pks=[pk], apps=[app])
    ledger.finish(claim, Outcome(status=status, reason="deadline" if status == "dead" else None))


@pytest.fixture
def stored(ledger: Ledger) -> dict[int, int]:
    """Ten SMS: even ones acme's, odd ones globex's; every third one dead in crm."""
    pks = {}
    for i in range(10):
        tenant = "acme" if i % 2 == 0 else "globex"
        pks[i] = ledger.store_event(sms(i, tenant), apps=["crm", "other"]).event_pk
        if i % 3 == 0:
            settle(ledger, pks[i], OutcomeStatus.DEAD)
    return pks


def test_event_pages_follow_the_cursor_newest_first(ledger: Ledger, stored: dict[int, int]) -> None:
    seen: list[int] = []
    before = None
    while True:
        page = ledger.event_page(before=before, limit=4)
        seen += [row.event_pk for row in page]
        if len(page) < 4:
            break
        before = page[-1].event_pk
    assert seen == sorted(stored.values(), reverse=True)
    row = ledger.event_row(stored[3])
    assert row is not None and row.masked_id == "**0003" and row.tenant == "globex"
    assert ledger.event_row(10**9) is None


def test_event_pages_are_filtered_and_scoped(ledger: Ledger, stored: dict[int, int]) -> None:
    acme = {row.event_pk for row in ledger.event_page(tenants={"acme"})}
    assert acme == {stored[i] for i in range(0, 10, 2)}
    dead = {row.event_pk for row in ledger.event_page(statuses={"dead"}, app="crm")}
    assert dead == {stored[i] for i in (0, 3, 6, 9)}
    assert ledger.event_page(statuses={"dead"}, app="other") == []
    since = {row.event_pk for row in ledger.event_page(since=T0 + timedelta(minutes=7))}
    assert since == {stored[7], stored[8], stored[9]}
    assert ledger.event_page(tenants=set()) == []


def test_delivery_pages_are_filtered_scoped_and_follow_the_cursor(
        ledger: Ledger, stored: dict[int, int]) -> None:
    dead = ledger.delivery_page(statuses={"dead"}, tenants={"acme"})
    assert [(v.event_pk, v.app) for v in dead] == [(stored[6], "crm"), (stored[0], "crm")]
    first = ledger.delivery_page(limit=3)
    rest = ledger.delivery_page(limit=100, before=first[-1].delivery_id)
    ids = [v.delivery_id for v in first + rest]
    assert ids == sorted(ids, reverse=True) and len(ids) == 20


def test_only_a_dead_or_failed_delivery_is_requeued(ledger: Ledger,
                                                   stored: dict[int, int]) -> None:
    dead = ledger.find_delivery("acme", "crm", stored[0])
    pending = ledger.find_delivery("acme", "other", stored[0])
    assert dead is not None and pending is not None
    assert ledger.requeue_ended(dead.delivery_id) is True
    after = ledger.delivery(dead.delivery_id)
    assert (after.status, after.reason) == ("pending", None)
    assert after.deadline_at is not None and after.deadline_at > datetime.now(UTC)
    assert ledger.requeue_ended(dead.delivery_id) is False  # pending now
    assert ledger.requeue_ended(pending.delivery_id) is False
    with pytest.raises(ValueError, match="never re-queued"):
        ledger.requeue_ended(dead.delivery_id, statuses=("logged",))
