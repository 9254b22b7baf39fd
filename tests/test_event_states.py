"""Events as they happen: a call ringing, in progress, ended; an SMS or fax before its
delivery status; which copy of an event wins."""

from __future__ import annotations

import json
from itertools import permutations
from typing import Any

import pytest
from callbridge.errors import EventValidationError
from callbridge.events import (
    CallEvent,
    CallState,
    FaxEvent,
    SmsEvent,
    dump_event,
    merge_revisions,
    newest,
    parse_event,
)


def call(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
        "external": {"number": "+12125550142"}, "started_at": "2026-03-02T10:00:00Z"}
    base.update(over)
    return base


RINGING = call(state="ringing", sequence=1)
IN_PROGRESS = call(state="in_progress", sequence=2, answered_at="2026-03-02T10:00:09Z",
                   notes="asked about the hearing")
ENDED = call(state="ended", sequence=3, answered_at="2026-03-02T10:00:09Z",
             ended_at="2026-03-02T10:04:00Z", outcome="completed")


def test_a_ringing_call_needs_no_end_and_is_not_final() -> None:
    event = parse_event(RINGING)
    assert isinstance(event, CallEvent) and event.state == CallState.RINGING
    assert not event.is_final and event.duration_seconds == 0 and event.talk_seconds == 0


def test_an_ended_call_needs_its_end_and_outcome() -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(call())  # state defaults to ended
    assert "ended_at: is required once the call has ended" in str(info.value)
    with pytest.raises(EventValidationError, match="outcome: is required"):
        parse_event(call(ended_at="2026-03-02T10:04:00Z"))
    assert parse_event(ENDED).is_final


def test_an_end_on_a_call_not_ended_is_refused() -> None:
    with pytest.raises(EventValidationError, match="outcome: is given but state is not 'ended'"):
        parse_event(call(state="in_progress", outcome="completed"))


@pytest.mark.parametrize(("kind", "status", "final"), [
    ("sms", None, True), ("sms", "pending", False), ("sms", "sent", True),
    ("sms", "delivered", True), ("fax", "pending", False), ("fax", "failed", True)])
def test_sms_and_fax_are_final_unless_pending(kind: str, status: str | None, final: bool) -> None:
    payload: dict[str, Any] = {"kind": kind, "id": "m-1", "tenant": "acme",
                               "direction": "outbound", "external": {"number": "+12125550142"},
                               "sent_at": "2026-03-02T10:00:00Z"}
    payload.update({"body": "on my way"} if kind == "sms" else {"page_count": 1})
    if status is not None:
        payload["status"] = status
    event = parse_event(payload)
    assert isinstance(event, SmsEvent | FaxEvent) and event.is_final is final


def _stored(payload: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(dump_event(parse_event(payload)))
    return result


def _apply(order: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    kept = _stored(order[0])
    for copy in order[1:]:
        merged = merge_revisions(kept, _stored(copy))
        if merged is not None:
            kept = merged
    return kept


@pytest.mark.parametrize("order", list(permutations([RINGING, IN_PROGRESS, ENDED])))
def test_in_any_order_the_furthest_state_wins_and_keeps_every_detail(
        order: tuple[dict[str, Any], ...]) -> None:
    kept = parse_event(_apply(order))
    assert isinstance(kept, CallEvent) and kept.is_final
    assert kept.outcome == "completed" and kept.notes == "asked about the hearing"


def test_between_equal_states_the_higher_sequence_wins() -> None:
    first = _stored(call(state="in_progress", sequence=5, answered_at="2026-03-02T10:00:09Z"))
    stale = _stored(call(state="in_progress", sequence=4, answered_at="2026-03-02T10:00:30Z"))
    assert merge_revisions(first, stale) is None  # nothing new: a duplicate
    assert merge_revisions(stale, first) == first


def test_a_stale_copy_adds_its_late_detail_but_changes_nothing_else() -> None:
    ended = _stored(ENDED)
    stale = _stored(call(state="in_progress", sequence=2, answered_at="2026-03-02T10:00:09Z",
                         recording_url="https://rec.example.com/1"))
    merged = merge_revisions(ended, stale)
    assert merged == {**ended, "recording_url": "https://rec.example.com/1"}


def test_without_sequences_the_copy_received_last_wins() -> None:
    a = _stored(call(state="ended", ended_at="2026-03-02T10:04:00Z", outcome="missed"))
    b = _stored(call(state="ended", ended_at="2026-03-02T10:04:00Z", outcome="voicemail"))
    assert merge_revisions(a, b) == b and merge_revisions(a, a) is None


def test_newest_works_on_events() -> None:
    ended, ringing = parse_event(ENDED), parse_event(RINGING)
    assert newest(ended, ringing) == ended and newest(ringing, ended) == ended


@pytest.mark.parametrize("order", [(RINGING, IN_PROGRESS, ENDED), (ENDED, IN_PROGRESS, RINGING)])
def test_the_ledger_keeps_the_furthest_copy_in_either_order(
        tmp_path: Any, order: tuple[dict[str, Any], ...]) -> None:
    from callbridge.ledger import Ledger

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", secret_key=Ledger.generate_key())
    ledger.migrate()
    try:
        stored = [ledger.store_event(parse_event(copy), apps=["crm"]) for copy in order]
        kept = ledger.load_event(stored[-1].event_pk)
        assert isinstance(kept, CallEvent) and kept.is_final
        assert kept.notes == "asked about the hearing"
        assert len({s.event_pk for s in stored}) == 1
    finally:
        ledger.close()
