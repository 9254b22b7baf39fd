"""Delivery states (SPEC §2.6): pending, waiting, parked, and the ended ones; the deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.ledger import tables as t
from callbridge.models import Outcome, OutcomeStatus, Record

NOW = datetime.now(UTC).replace(microsecond=0)


def sms(i: int = 1, at: datetime = NOW) -> Any:
    return parse_event({"kind": "sms", "id": f"s-{i}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550177"}, "sent_at": at.isoformat(),
                        "body": "hello"})


def waiting(reason: str, at: datetime, message: str = "AppUnavailable: 503") -> Outcome:
    return Outcome(status=OutcomeStatus.WAITING, reason=reason, message=message,
                   next_attempt_at=at)


def parked(reason: str) -> Outcome:
    return Outcome(status=OutcomeStatus.PARKED, reason=reason, message="re-authorise")


def one_claim(ledger: Ledger, at: datetime = NOW) -> Any:
    (claim,) = ledger.claim(owner="w", limit=1, lease_seconds=30, now=at)
    return claim


def test_every_state_of_the_spec_is_an_outcome_status() -> None:
    assert {s.value for s in OutcomeStatus} == {
        "pending", "waiting", "parked", "logged", "accepted", "skipped", "unresolved",
        "failed", "dead"}


def test_a_delivery_gets_a_deadline_from_its_event(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"], received_at=NOW - timedelta(seconds=1))
    (view,) = ledger.history()
    assert view.deadline_at == NOW + timedelta(hours=72)


def test_a_late_event_gets_its_deadline_from_its_arrival(ledger_url: str, key: str) -> None:
    ledger = Ledger(ledger_url, secret_key=key, deadline_hours=5)
    ledger.migrate()
    ledger.store_event(sms(at=NOW - timedelta(days=30)), apps=["crm"], received_at=NOW)
    (view,) = ledger.history()
    assert view.deadline_at == NOW + timedelta(hours=5)


def test_a_deadline_that_is_no_time_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="deadline_hours"):
        Ledger(f"sqlite:///{tmp_path / 'l.db'}", secret_key=key, deadline_hours=0)


def test_a_waiting_delivery_is_claimed_once_its_time_has_come(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    ledger.finish(one_claim(ledger), waiting("backoff", NOW + timedelta(minutes=5)))
    view = ledger.history()[0]
    assert (view.status, view.reason, view.message) == ("waiting", "backoff", "AppUnavailable: 503")
    assert ledger.claim(owner="w", limit=1, lease_seconds=30, now=NOW + timedelta(minutes=4)) == []
    assert one_claim(ledger, NOW + timedelta(minutes=5)).attempt == 2


def test_waiting_for_rate_limit_room_does_not_spend_an_attempt(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    for _ in range(3):
        ledger.finish(one_claim(ledger), waiting("rate_limit", NOW))
    claim = one_claim(ledger)
    assert claim.attempt == 1
    ledger.finish(claim, Outcome(status=OutcomeStatus.LOGGED, records=(Record(kind="log", id="1"),)))
    view = ledger.history()[0]
    assert view.attempts == 1
    assert [a.status for a in ledger.attempts(view.delivery_id)] == ["waiting"] * 3 + ["logged"]


def test_a_retryable_failure_of_hook_api_1_waits(ledger: Ledger) -> None:
    ledger.store_event(sms(i=1), apps=["crm"])
    ledger.store_event(sms(i=2), apps=["crm"])
    first, second = ledger.claim(owner="w", limit=2, lease_seconds=30, now=NOW)
    ledger.finish(first, Outcome(status=OutcomeStatus.FAILED, reason="transient", retryable=True,
                                 message="AppUnavailable: 503", next_attempt_at=NOW))
    ledger.finish(second, Outcome(status=OutcomeStatus.FAILED, reason="rate_limited",
                                  retryable=True, next_attempt_at=NOW))
    views = {v.delivery_id: v for v in ledger.history()}
    assert (views[first.delivery_id].status, views[first.delivery_id].reason) == ("waiting", "backoff")
    assert views[first.delivery_id].message == "AppUnavailable: 503"
    assert views[second.delivery_id].reason == "rate_limit"


def test_a_backoff_past_the_deadline_is_dead_with_its_last_error(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    ledger.finish(one_claim(ledger), waiting("backoff", NOW + timedelta(hours=73)))
    view = ledger.history()[0]
    assert (view.status, view.reason, view.message) == ("dead", "deadline", "AppUnavailable: 503")
    assert not view.retryable and view.next_attempt_at is None
    assert ledger.claim(owner="w", limit=1, lease_seconds=30, now=NOW + timedelta(days=9)) == []


def test_a_dead_delivery_requeued_gets_a_new_deadline(ledger: Ledger) -> None:
    ledger.store_event(sms(), apps=["crm"])
    ledger.finish(one_claim(ledger), waiting("backoff", NOW + timedelta(hours=73)))
    view = ledger.history()[0]
    ledger.requeue(view.delivery_id, mode="auto")
    again = ledger.delivery(view.delivery_id)
    assert again.status == "pending" and again.deadline_at is not None
    assert again.deadline_at > datetime.now(UTC) + timedelta(hours=71)


def test_a_parked_delivery_is_never_claimed_until_unparked(ledger: Ledger) -> None:
    for i in range(3):
        ledger.store_event(sms(i=i), apps=["crm", "other"])
    claims = ledger.claim(owner="w", limit=6, lease_seconds=30, now=NOW, apps=["crm"])
    for claim, reason in zip(claims, ["reauthorise", "reauthorise", "daily_limit"], strict=True):
        ledger.finish(claim, parked(reason))
    later = NOW + timedelta(days=30)
    assert ledger.claim(owner="w", limit=6, lease_seconds=30, now=later, apps=["crm"]) == []
    assert ledger.unpark("acme", "other", "reauthorise") == 0
    assert ledger.unpark("acme", "crm", "reauthorise") == 2
    again = ledger.claim(owner="w", limit=6, lease_seconds=30, now=NOW, apps=["crm"])
    assert len(again) == 2 and all(c.attempt == 2 for c in again)
    assert ledger.counts() == {("crm", "parked"): 1, ("crm", "pending"): 2, ("other", "pending"): 3}


def test_unpark_names_the_reasons_it_knows(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="reason: must be one of reauthorise"):
        ledger.unpark("acme", "crm", "later")


def test_the_migration_makes_retryable_failures_wait(ledger_url: str, key: str) -> None:
    """A ledger made by 0001 with failed deliveries, migrated: the retryable ones wait."""
    from alembic import command
    from alembic.config import Config
    from callbridge.ledger import MIGRATIONS

    ledger = Ledger(ledger_url, secret_key=key)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with ledger.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")  # from an empty schema, whatever the fixture made
        command.upgrade(cfg, "0001")
    received = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    with ledger.engine.begin() as conn:  # the columns of 0001 only
        event = conn.execute(t.events.insert().values(
            tenant="acme", source="pbx", kind="sms", source_id="s-1", occurred_at=received,
            received_at=received, revision=1, content_hash="x")).inserted_primary_key[0]
        for app, reason, retry in [("app1", "transient", True), ("app2", "rate_limited", True),
                                   ("app3", "permanent", False)]:
            conn.execute(t.deliveries.insert().values(
                event_id=event, tenant="acme", app=app, occurred_at=received, mode="auto",
                status="failed", reason=reason, retryable=retry, needs_update=False, fence=1,
                attempt=1, updated_at=received))
    ledger.migrate()
    got = {v.app: (v.status, v.reason, v.message, v.deadline_at) for v in ledger.history()}
    deadline = received + timedelta(hours=72)
    assert got == {"app1": ("waiting", "backoff", "transient", deadline),
                   "app2": ("waiting", "rate_limit", "rate_limited", deadline),
                   "app3": ("failed", "permanent", None, deadline)}
