"""The ledger's revisions and late details (SPEC §1, §4), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from callbridge.events import CallEvent, parse_event
from callbridge.ledger import AlreadyLogged, Ledger
from callbridge.models import Outcome, OutcomeStatus, Record

NUMBER = "+12125550177"
RECORDING = "https://recordings.example.test/r/1"
LOGGED = Outcome(status=OutcomeStatus.LOGGED, records=(Record(kind="log", id="1"),))


def call(**over: Any) -> CallEvent:
    data = {"kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
            "external": {"number": NUMBER}, "started_at": "2026-03-02T10:00:00Z",
            "answered_at": "2026-03-02T10:00:05Z", "ended_at": "2026-03-02T10:04:00Z",
            "outcome": "completed"}
    data.update(over)
    event = parse_event(data)
    assert isinstance(event, CallEvent)
    return event


def failed(retry_at: datetime | None) -> Outcome:
    return Outcome(status=OutcomeStatus.FAILED, reason="transient", retryable=retry_at is not None,
                   next_attempt_at=retry_at)


def logged_once(ledger: Ledger) -> int:
    ledger.store_event(call(), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    ledger.finish(claim, LOGGED)
    return claim.delivery_id


def test_an_older_copy_after_a_richer_one_is_a_duplicate(ledger: Ledger) -> None:
    ledger.store_event(call(), apps=["crm"])
    richer = ledger.store_event(call(recording_url=RECORDING), apps=["crm"])
    replay = ledger.store_event(call(), apps=["crm"])
    assert (richer.status, replay.status, replay.revision) == ("revision", "duplicate", 2)
    assert ledger.load_event(replay.event_pk).recording_url == RECORDING  # type: ignore[union-attr]


def test_a_stored_result_carries_the_event_as_the_ledger_holds_it(ledger: Ledger) -> None:
    ledger.store_event(call(recording_url=RECORDING), apps=["crm"])
    replay = ledger.store_event(call(), apps=["crm"])
    assert isinstance(replay.event, CallEvent) and replay.event.recording_url == RECORDING


def test_a_new_detail_keeps_the_details_received_before(ledger: Ledger) -> None:
    ledger.store_event(call(recording_url=RECORDING), apps=["crm"])
    stored = ledger.store_event(call(transcript="hello"), apps=["crm"])
    event = ledger.load_event(stored.event_pk)
    assert stored.status == "revision"
    assert isinstance(event, CallEvent)
    assert (event.recording_url, event.transcript) == (RECORDING, "hello")


def test_a_changed_field_other_than_a_late_detail_is_a_revision(ledger: Ledger) -> None:
    ledger.store_event(call(), apps=["crm"])
    stored = ledger.store_event(call(outcome="voicemail", answered_at=None), apps=["crm"])
    assert (stored.status, stored.revision) == ("revision", 2)
    assert ledger.load_event(stored.event_pk).outcome == "voicemail"  # type: ignore[union-attr]


def test_a_revision_while_the_log_is_being_written_asks_for_an_update(ledger: Ledger) -> None:
    ledger.store_event(call(), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    ledger.store_event(call(recording_url=RECORDING), apps=["crm"])  # arrives mid-log
    ledger.finish(claim, LOGGED)
    (update,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    assert update.needs_update and update.revision == 2


def test_a_revision_before_the_first_log_needs_no_update(ledger: Ledger) -> None:
    ledger.store_event(call(), apps=["crm"])
    ledger.store_event(call(recording_url=RECORDING), apps=["crm"])
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    ledger.finish(claim, LOGGED)
    assert not claim.needs_update and claim.revision == 2
    assert ledger.claim(owner="a", limit=1, lease_seconds=30) == []


def test_a_failed_update_waits_for_its_retry_time(ledger: Ledger) -> None:
    logged_once(ledger)
    ledger.store_event(call(recording_url=RECORDING), apps=["crm"])
    now = datetime.now(UTC)
    (update,) = ledger.claim(owner="a", limit=1, lease_seconds=30, now=now)
    ledger.finish(update, failed(now + timedelta(minutes=5)))
    assert ledger.claim(owner="a", limit=1, lease_seconds=30, now=now + timedelta(minutes=1)) == []
    (retry,) = ledger.claim(owner="a", limit=1, lease_seconds=30, now=now + timedelta(minutes=6))
    assert retry.needs_update and retry.records == (Record(kind="log", id="1"),)


def test_an_update_that_gives_up_is_not_claimed_again(ledger: Ledger) -> None:
    delivery = logged_once(ledger)
    ledger.store_event(call(recording_url=RECORDING), apps=["crm"])
    (update,) = ledger.claim(owner="a", limit=1, lease_seconds=30)
    ledger.finish(update, failed(None))
    assert ledger.claim(owner="a", limit=1, lease_seconds=30) == []
    view = ledger.delivery(delivery)
    assert view.status == "failed" and view.records == (Record(kind="log", id="1"),)


def test_a_first_log_that_failed_is_retried_whole_with_the_newest_contents(ledger: Ledger) -> None:
    ledger.store_event(call(), apps=["crm"])
    now = datetime.now(UTC)
    (claim,) = ledger.claim(owner="a", limit=1, lease_seconds=30, now=now)
    ledger.store_event(call(recording_url=RECORDING), apps=["crm"])
    ledger.finish(claim, failed(now))
    (retry,) = ledger.claim(owner="a", limit=1, lease_seconds=30, now=now + timedelta(seconds=1))
    assert not retry.needs_update and retry.revision == 2


def test_a_copy_of_an_erased_event_does_not_bring_its_contents_back(ledger: Ledger) -> None:
    stored = ledger.store_event(call(), apps=["crm"])
    ledger.erase_person("acme", NUMBER)
    again = ledger.store_event(call(recording_url=RECORDING), apps=["crm", "clio"])
    assert (again.status, again.event_pk, again.event) == ("duplicate", stored.event_pk, None)
    assert ledger.find_delivery("acme", "clio", stored.event_pk) is None


def test_a_logged_delivery_cannot_be_requeued_or_chosen_again(ledger: Ledger) -> None:
    delivery = logged_once(ledger)
    with pytest.raises(AlreadyLogged, match="already logged in crm"):
        ledger.requeue(delivery, mode="manual")
    with pytest.raises(AlreadyLogged):
        ledger.choose(delivery, ["7"])
    assert ledger.delivery(delivery).status == "logged"


def test_requeueing_an_unknown_delivery_is_a_key_error(ledger: Ledger) -> None:
    with pytest.raises(KeyError):
        ledger.requeue(999, mode="manual")
