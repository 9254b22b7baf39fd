"""Accepted deliveries awaiting confirmation: the ledger's side (on SQLite and
PostgreSQL) and when the host checks again. The whole unit runs end to end against
the Smokeball sandbox in plugins/smokeball/tests/test_confirm_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callbridge.capabilities import Capability, Declaration
from callbridge.confirming import CHECK_GRAIN, MAX_INTERVAL, Confirmer, _round_up
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.models import Outcome, OutcomeStatus, Record

FEE = Record(kind="fee", id="m1/f1", step="fee")
T0 = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)


def sms(n: int = 1) -> Any:
    return parse_event({"kind": "sms", "id": f"s-{n}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550177"},
                        "sent_at": "2026-03-02T10:00:00Z", "body": "hello"})


def accepted(ledger: Ledger, *, check_at: datetime, n: int = 1, at: datetime = T0) -> int:
    """A delivery the app accepted at ``at``, first checked at ``check_at``."""
    ledger.store_event(sms(n), apps=["crm"])
    (claim,) = ledger.claim(owner="w", limit=1, lease_seconds=30, now=at)
    ledger.begin_step(claim, "fee", "fee")
    ledger.remember(claim, FEE)
    ledger.finish(claim, Outcome(status=OutcomeStatus.ACCEPTED, records=(FEE,),
                                 next_attempt_at=check_at), now=at)
    return int(claim.delivery_id)


def status(ledger: Ledger, delivery_id: int) -> Any:
    return next(v for v in ledger.history(limit=100) if v.delivery_id == delivery_id)


def test_an_accepted_delivery_is_listed_once_its_check_is_due(ledger: Ledger) -> None:
    did = accepted(ledger, check_at=T0 + timedelta(minutes=2))
    assert ledger.accepted_due(now=T0 + timedelta(minutes=1)) == []
    (due,) = ledger.accepted_due(now=T0 + timedelta(minutes=2))
    assert (due.delivery_id, due.app, due.records) == (did, "crm", (FEE,))
    assert due.accepted_at == T0 and due.check_at == T0 + timedelta(minutes=2)
    # Accepted is not claimable work: the worker leaves it to the check.
    assert ledger.claim(owner="w", limit=5, lease_seconds=30, now=T0 + timedelta(hours=1)) == []


def test_found_makes_it_logged_with_its_records(ledger: Ledger) -> None:
    did = accepted(ledger, check_at=T0)
    assert ledger.set_confirmed(did, now=T0 + timedelta(minutes=2))
    view = status(ledger, did)
    assert (view.status, view.records, view.next_attempt_at) == ("logged", (FEE,), None)
    assert not ledger.set_confirmed(did)  # no longer accepted: nothing changes
    assert ledger.accepted_due(now=T0 + timedelta(hours=1)) == []


def test_not_visible_yet_moves_the_next_check(ledger: Ledger) -> None:
    did = accepted(ledger, check_at=T0)
    later = T0 + timedelta(minutes=6)
    assert ledger.recheck_accepted(did, later, now=T0 + timedelta(minutes=2))
    assert ledger.accepted_due(now=later - timedelta(seconds=1)) == []
    view = status(ledger, did)
    assert (view.status, view.next_attempt_at, view.records) == ("accepted", later, (FEE,))


def test_missing_drops_the_records_and_the_retry_looks_before_writing(ledger: Ledger) -> None:
    did = accepted(ledger, check_at=T0)
    retry_at = T0 + timedelta(minutes=3)
    assert ledger.reopen_unconfirmed(did, retry_at=retry_at, message="never appeared",
                                     now=T0 + timedelta(minutes=2))
    view = status(ledger, did)
    assert (view.status, view.reason, view.records) == ("waiting", "backoff", ())
    assert ledger.claim(owner="w", limit=1, lease_seconds=30,
                        now=retry_at - timedelta(seconds=1)) == []
    (retry,) = ledger.claim(owner="w", limit=1, lease_seconds=30, now=retry_at)
    # No record to return as is; the step stays begun, so the plugin's find() runs first.
    assert retry.records == () and ("fee", "fee") in retry.begun


def test_missing_past_the_deadline_is_dead(ledger: Ledger) -> None:
    did = accepted(ledger, check_at=T0)
    deadline = status(ledger, did).deadline_at
    assert deadline is not None
    assert ledger.reopen_unconfirmed(did, retry_at=deadline + timedelta(minutes=1),
                                     message="gone", now=deadline)
    view = status(ledger, did)
    assert (view.status, view.reason) == ("dead", "deadline")


def test_a_delivery_being_updated_is_left_alone(ledger: Ledger) -> None:
    did = accepted(ledger, check_at=T0)
    ledger.store_event(sms().model_copy(update={"body": "hello again"}), apps=["crm"])
    (claim,) = ledger.claim(owner="w", limit=1, lease_seconds=30, now=T0 + timedelta(minutes=2))
    assert claim.needs_update  # a late revision: its log is being updated under a lease
    now = T0 + timedelta(minutes=2, seconds=1)
    assert ledger.accepted_due(now=now) == []
    assert not ledger.reopen_unconfirmed(did, retry_at=now, message="x", now=now)
    assert status(ledger, did).records == (FEE,)


def declared(**extra: Any) -> Declaration:
    return Declaration(name="crm", version="1", hook_api_version="2.0",
                       capabilities=frozenset({Capability.CALLS}), **extra)


def test_checks_again_less_often_as_time_passes_until_the_timeout() -> None:
    decl = declared(consistency_delay=120, confirm_timeout=1800)
    nxt = Confirmer._next_check
    assert nxt(decl, T0, T0 + timedelta(seconds=120), None) == T0 + timedelta(seconds=240)
    assert nxt(decl, T0, T0 + timedelta(seconds=800), None) == T0 + timedelta(seconds=1200)
    assert nxt(decl, T0, T0 + timedelta(seconds=1200), None) == T0 + timedelta(seconds=1800)
    long = declared(consistency_delay=120, confirm_timeout=86400)
    assert nxt(long, T0, T0 + timedelta(hours=5), None) == \
        T0 + timedelta(hours=5, seconds=MAX_INTERVAL)
    # A rate limit's wait is honoured.
    assert nxt(decl, T0, T0 + timedelta(seconds=120), 400.0) == T0 + timedelta(seconds=520)


def test_first_checks_fall_on_a_shared_grain() -> None:
    a, b = _round_up(T0 + timedelta(seconds=121)), _round_up(T0 + timedelta(seconds=139))
    assert a == b and a >= T0 + timedelta(seconds=139) and a.timestamp() % CHECK_GRAIN == 0
    assert _round_up(T0) == T0


def test_a_check_holds_its_deliveries_so_no_other_process_checks_or_settles_them(
        ledger: Ledger) -> None:
    did = accepted(ledger, check_at=T0)
    now = T0 + timedelta(minutes=2)
    (mine,) = ledger.accepted_due(now=now, owner="a", lease_seconds=300)
    assert ledger.accepted_due(now=now, owner="b") == []
    assert not ledger.reopen_unconfirmed(did, retry_at=now, message="x", now=now, owner="b")
    assert ledger.set_confirmed(mine.delivery_id, now=now, owner="a")
    assert status(ledger, did).status == "logged"
    # A check that outlasted its lease changes nothing; the next round checks again.
    other = accepted(ledger, check_at=T0, n=2)
    ledger.accepted_due(now=now, owner="a", lease_seconds=300)
    late = now + timedelta(seconds=301)
    assert not ledger.set_confirmed(other, now=late, owner="a")
    assert [d.delivery_id for d in ledger.accepted_due(now=late, owner="b")] == [other]
