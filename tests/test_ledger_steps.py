"""The write protocol's ledger side: steps begun, records remembered once, no record
silently dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from callbridge.events import parse_event
from callbridge.ledger import DuplicateRecord, LeaseLost, Ledger
from callbridge.models import Outcome, OutcomeStatus, Record

COMM = Record(kind="communication", id="77", step="communication")


def sms() -> Any:
    return parse_event({"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550177"},
                        "sent_at": "2026-03-02T10:00:00Z", "body": "hello"})


def claimed(ledger: Ledger, at: datetime | None = None) -> Any:
    (claim,) = ledger.claim(owner="w", limit=1, lease_seconds=30, now=at)
    return claim


def logged(*records: Record) -> Outcome:
    return Outcome(status=OutcomeStatus.LOGGED, records=records)


def retry_soon() -> Outcome:
    return Outcome(status=OutcomeStatus.WAITING, reason="backoff", next_attempt_at=datetime.now(UTC))


def test_a_step_begun_without_its_record_is_known_to_the_next_attempt(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    first = claimed(ledger)
    assert first.begun == frozenset() and not ledger.step_begun(first, "communication", "main")
    ledger.begin_step(first, "communication", "main")
    ledger.begin_step(first, "communication", "main")  # again: still one step
    ledger.finish(first, retry_soon())
    second = claimed(ledger, datetime.now(UTC) + timedelta(seconds=1))
    assert second.begun == {("communication", "main")} and second.records == ()
    assert ledger.step_begun(second, "communication", "main")
    assert not ledger.step_begun(second, "time_entry", "main")


def test_beginning_a_step_is_fenced(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    now = datetime.now(UTC)
    old = claimed(ledger, now)
    claimed(ledger, now + timedelta(seconds=31))  # the lease lapsed; another owner took it
    with pytest.raises(LeaseLost):
        ledger.begin_step(old, "communication", "main")


def test_the_same_record_remembered_twice_is_kept_once(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    claim = claimed(ledger)
    ledger.remember(claim, COMM)
    ledger.remember(claim, COMM)
    ledger.finish(claim, logged(COMM))
    assert ledger.records(claim.delivery_id) == (COMM,)


def test_a_different_record_for_the_same_step_is_an_error_and_the_first_is_kept(
        ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    claim = claimed(ledger)
    ledger.remember(claim, COMM)
    with pytest.raises(DuplicateRecord, match="second 'communication' record for step"):
        ledger.remember(claim, COMM.model_copy(update={"id": "78"}))
    assert ledger.records(claim.delivery_id) == (COMM,)


def test_finish_keeps_records_not_remembered_and_reinserts_none(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    claim = claimed(ledger)
    ledger.remember(claim, COMM)
    entry = Record(kind="time_entry", id="5", step="time_entry")
    ledger.finish(claim, logged(COMM, entry))
    assert ledger.records(claim.delivery_id) == (COMM, entry)


def test_a_second_record_at_finish_is_a_permanent_failure_not_dropped(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    claim = claimed(ledger)
    ledger.remember(claim, COMM)
    ledger.finish(claim, logged(COMM.model_copy(update={"id": "78"})))
    view = ledger.delivery(claim.delivery_id)
    assert (view.status, view.reason) == ("failed", "duplicate_record")
    assert "communication" in (view.message or "") and view.records == (COMM,)
    assert [a.reason for a in ledger.attempts(claim.delivery_id)] == ["duplicate_record"]


def test_two_records_of_one_step_in_one_outcome_are_refused(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    claim = claimed(ledger)
    ledger.finish(claim, logged(COMM, COMM.model_copy(update={"id": "78"})))
    view = ledger.delivery(claim.delivery_id)
    assert view.reason == "duplicate_record" and view.records == ()
