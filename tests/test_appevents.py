"""App events, the host's side: accepted deliveries found by the marker their writes
carried (on SQLite and PostgreSQL), when a subscription is renewed, and a matter changed
in a firm's closed-matter source bringing its poll forward. The whole,
through the server's route and the Smokeball sandbox's signed requests, runs in
plugins/smokeball/tests/test_appevents_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from callbridge.appevents import (
    RECHECK_EVERY,
    RENEW_BEFORE,
    SUBSCRIPTION_KEY,
    Kept,
    callback_url,
    renewal_time,
)
from callbridge.closing.store import ClosingStore
from callbridge.events import parse_event
from callbridge.ledger import Ledger
from callbridge.models import (
    AppRequest,
    AppSubscription,
    MatterChanged,
    Outcome,
    OutcomeStatus,
    Record,
)
from callbridge.oauth import reconnected
from callbridge.testing import AppEventSamples
from callbridge.testing.clock import FakeClock

from tests.closing_fakes import Destination, Source
from tests.closing_fakes import engine as closing_engine

T0 = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)


def sms(n: int) -> Any:
    return parse_event({"kind": "sms", "id": f"s-{n}", "tenant": "acme", "direction": "inbound",
                        "external": {"number": "+12125550177"},
                        "sent_at": "2026-03-02T10:00:00Z", "body": "hello"})


def delivered(ledger: Ledger, n: int, status: OutcomeStatus) -> tuple[int, str]:
    """A delivery of SMS ``n`` that wrote one memo and ended ``status``; its id and marker."""
    event = sms(n)
    ledger.store_event(event, apps=["crm"])
    (claim,) = ledger.claim(owner="w", limit=1, lease_seconds=30, now=T0)
    record = Record(kind="memo", id=f"m1/memo-{n}", step="memo")
    ledger.begin_step(claim, "memo", "memo")
    ledger.remember(claim, record)
    ledger.finish(claim, Outcome(status=status, records=(record,),
                                 next_attempt_at=T0 + timedelta(minutes=2)
                                 if status is OutcomeStatus.ACCEPTED else None), now=T0)
    return int(claim.delivery_id), ledger.marker_for(event, claim.first_attempt_at)


def test_accepted_deliveries_are_found_by_the_marker_their_writes_carried(
        ledger: Ledger) -> None:
    first, marker1 = delivered(ledger, 1, OutcomeStatus.ACCEPTED)
    second, marker2 = delivered(ledger, 2, OutcomeStatus.ACCEPTED)
    _, logged_marker = delivered(ledger, 3, OutcomeStatus.LOGGED)
    found = ledger.accepted_by_marker("acme", "crm", {marker2, logged_marker, "cb2-" + "0" * 32})
    # Only the accepted one asked for: a settled delivery and an unknown marker give nothing.
    assert list(found) == [marker2]
    assert found[marker2].delivery_id == second
    assert found[marker2].records == (Record(kind="memo", id="m1/memo-2", step="memo"),)
    assert found[marker2].accepted_at == T0
    # Another tenant's or app's deliveries are never matched.
    assert ledger.accepted_by_marker("other", "crm", {marker1}) == {}
    assert ledger.accepted_by_marker("acme", "other", {marker1}) == {}
    assert ledger.accepted_by_marker("acme", "crm", set()) == {}
    # Once settled, the same marker finds nothing: a repeated report changes nothing.
    assert ledger.set_confirmed(first, now=T0 + timedelta(minutes=1))
    assert ledger.accepted_by_marker("acme", "crm", {marker1}) == {}


def test_a_subscription_is_renewed_a_day_before_it_expires_or_halfway_through_a_short_life(
        ) -> None:
    week = AppSubscription(id="s", expires_at=T0 + timedelta(days=7))
    assert renewal_time(week, T0) == week.expires_at - timedelta(seconds=RENEW_BEFORE)
    hour = AppSubscription(id="s", expires_at=T0 + timedelta(hours=1))
    assert renewal_time(hour, T0) == T0 + timedelta(minutes=30)
    lapsed = AppSubscription(id="s", expires_at=T0 - timedelta(minutes=1))
    assert renewal_time(lapsed, T0) <= T0  # due at once
    forever = AppSubscription(id="s")
    assert renewal_time(forever, T0) == T0 + timedelta(seconds=RECHECK_EVERY)


def test_the_callback_url_names_the_tenant_and_the_app() -> None:
    assert callback_url("https://cb.example.com/", "acme", "smokeball") == \
        "https://cb.example.com/v1/apps/acme/smokeball/events"


async def test_a_matter_changed_in_the_firms_source_brings_its_closed_matter_poll_forward(
        tmp_path: Path, key: str) -> None:
    clock = FakeClock(T0)
    e = closing_engine(tmp_path, key, Source([]), Destination(), clock)
    try:
        store = ClosingStore(e, "acme", "source", "dest")
        later = T0 + timedelta(minutes=30)
        await store.keep_next_poll(later)
        # Another app's matter is none of the sync's business.
        done = await e.app_events.dispatch("acme", "dest", [MatterChanged(matter_id="7")])
        assert done.matters == 1 and await store.next_poll() == later
        done = await e.app_events.dispatch("acme", "source", [
            MatterChanged(matter_id="7", closed=True, changed_at=T0)])
        assert done.matters == 1 and await store.next_poll() == T0
    finally:
        await e.aclose()


def test_the_kits_app_event_samples_need_a_request_and_a_kind_for_writes() -> None:
    def build(sub: AppSubscription, name: str, now: datetime) -> AppRequest:
        return AppRequest(headers={}, body=b"{}", url="https://cb.example.com/", received_at=now)

    with pytest.raises(ValueError, match="at least one"):
        AppEventSamples()
    with pytest.raises(ValueError, match="kind"):
        AppEventSamples(write_done=build)
    assert AppEventSamples(matter_changed=build).kind is None


def test_a_reconnection_makes_the_apps_subscription_due_for_a_check(ledger: Ledger) -> None:
    kept = Kept(AppSubscription(id="s1", secret="k"), "https://cb.example.com/x",
                T0 + timedelta(days=1))
    ledger.kv_set("acme", "crm", SUBSCRIPTION_KEY, kept.dumps())
    reconnected(ledger, "acme", "crm")
    again = Kept.loads(ledger.kv_get("acme", "crm", SUBSCRIPTION_KEY) or "")
    assert again.subscription == kept.subscription and again.renew_at <= ledger.clock.now()
    # Nothing kept: nothing made.
    reconnected(ledger, "acme", "other")
    assert ledger.kv_get("acme", "other", SUBSCRIPTION_KEY) is None
