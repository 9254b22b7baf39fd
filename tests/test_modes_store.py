"""The logging modes' ledger changes, on SQLite and PostgreSQL: each made only in the
state it was decided on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callbridge.models import Outcome, OutcomeStatus
from callbridge.modes import store

from tests.modes_support import call

NOW = datetime(2026, 1, 5, 15, 10, tzinfo=UTC)


def test_events_are_found_by_the_sources_id_or_the_ledgers(ledger: Any) -> None:
    pk = ledger.store_event(call("c-1"), apps=["crm"]).event_pk
    assert store.find_events(ledger, "c-1") == [(pk, "acme")]
    assert store.find_events(ledger, f"#{pk}") == [(pk, "acme")]
    assert store.find_events(ledger, "c-1", tenant="other") == []
    assert store.find_events(ledger, "c-404") == []


def test_a_reopen_decided_on_a_state_that_changed_changes_nothing(ledger: Any) -> None:
    pk = ledger.store_event(call("c-1"), apps=["crm"]).event_pk
    [claim] = ledger.claim(owner="w", limit=1, lease_seconds=30, now=NOW)
    row = store.delivery_rows(ledger, pk, NOW)["crm"]
    assert row.leased and not store.reopen(ledger, row.delivery_id, now=NOW, mode="manual")
    ledger.finish(claim, Outcome(status=OutcomeStatus.SKIPPED, reason="no_contact"), now=NOW)
    view = ledger.delivery(row.delivery_id)
    assert not store.reopen(ledger, row.delivery_id, now=NOW, mode="digest", status="skipped",
                            reason="no_contact", since=view.updated_at - timedelta(seconds=1))
    assert store.reopen(ledger, row.delivery_id, now=NOW, mode="digest", status="skipped",
                        reason="no_contact", since=view.updated_at, chosen=["c9"])
    again = ledger.delivery(row.delivery_id)
    assert (again.status, again.mode) == ("pending", "digest")


def test_delayed_deliveries_are_held_released_cleared_and_dropped(ledger: Any) -> None:
    pk = ledger.store_event(call("c-1", state="in_progress"), apps=[]).event_pk
    assert store.set_delayed(ledger, pk, "crm", now=NOW, due=None, notes="secret notes",
                             chosen=["c1"], convert_automatic=True) == "made"
    assert store.held_events(ledger, "acme") == [pk]
    assert ledger.claim(owner="w", limit=5, lease_seconds=30, now=NOW) == []
    assert store.drop_plans(ledger, pk, NOW) == 1 and store.delivery_rows(ledger, pk, NOW) == {}
    store.set_delayed(ledger, pk, "crm", now=NOW, due=None, notes="again", chosen=None,
                      convert_automatic=True)
    due = NOW + timedelta(minutes=5)
    assert store.release_held(ledger, pk, {"crm": due}, NOW) == 1
    assert store.clear_notes(ledger, pk, NOW) == 1
    [claim] = ledger.claim(owner="w", limit=5, lease_seconds=30, now=due)
    assert (claim.mode, claim.notes, claim.chosen_contact_ids) == ("delayed", None, None)


def test_calls_lacking_a_delivery_to_an_app_are_listed(ledger: Any) -> None:
    one = ledger.store_event(call("c-1"), apps=["crm"]).event_pk
    two = ledger.store_event(call("c-2"), apps=[]).event_pk
    since = datetime(2026, 1, 5, 14, tzinfo=UTC)
    assert store.calls_without(ledger, "acme", since, ["crm", "other"]) == {
        one: {"other"}, two: {"crm", "other"}}
    assert store.calls_without(ledger, "acme", NOW, ["crm"]) == {}
