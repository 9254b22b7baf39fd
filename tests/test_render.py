"""The standard words of a log (callbridge.render): subjects, bodies, revisions in place."""

from __future__ import annotations

from callbridge import render
from callbridge.events import CallEvent, parse_event
from callbridge.models import AppUser, Contact, LogTarget

BASE = {"tenant": "acme", "id": "c-1", "direction": "inbound",
        "external": {"number": "+12125550142"}, "internal": {"extension": "201"}}


def call(**fields: object) -> CallEvent:
    payload = {**BASE, "kind": "call", "started_at": "2026-01-05T15:00:00+00:00",
               "answered_at": "2026-01-05T15:00:10+00:00", "ended_at": "2026-01-05T15:04:15+00:00",
               "outcome": "completed", **fields}
    event = parse_event(payload, region="US")
    assert isinstance(event, CallEvent)
    return event


ANN = LogTarget(contacts=(Contact(id="7", name="Ann Lee"),), user=AppUser(id="1", name="Bo Diaz"))


def test_the_subject_names_the_contact_and_the_number() -> None:
    assert render.subject(call(), ANN) == "Inbound call from Ann Lee (+1 212-555-0142)"


def test_an_unanswered_inbound_call_reads_as_missed_or_voicemail() -> None:
    missed = call(answered_at=None, outcome="missed")
    voicemail = call(answered_at=None, outcome="voicemail")
    assert render.subject(missed, LogTarget()).startswith("Missed call from +1 212")
    assert render.subject(voicemail, LogTarget()).startswith("Voicemail from")


def test_an_outbound_sms_and_a_withheld_party() -> None:
    sms = parse_event({**BASE, "kind": "sms", "direction": "outbound", "external": {"number": "anonymous"},
                       "sent_at": "2026-01-05T15:00:00+00:00", "body": "On my way"}, region="US")
    assert render.subject(sms, LogTarget()) == "SMS to withheld number"
    assert render.body(sms, LogTarget()).endswith("\n\nOn my way")


def test_the_body_holds_facts_then_notes_then_late_details_then_extras() -> None:
    event = call(notes="Wants a callback", recording_url="https://rec.example.com/1")
    text = render.body(event, ANN, extra=["ref: cb2-x"])
    parts = text.split("\n\n")
    assert parts[0].splitlines()[:2] == ["Direction: inbound", "External number: +1 212-555-0142"]
    assert "Staff: Bo Diaz" in parts[0] and "Duration: 4m 15s (talk time 4m 05s)" in parts[0]
    assert parts[1:] == ["Notes:\nWants a callback", "Recording: https://rec.example.com/1", "ref: cb2-x"]


def test_notes_chosen_for_the_log_override_the_events() -> None:
    chosen = LogTarget(notes="Chosen words")
    assert "Notes:\nChosen words" in render.body(call(notes="typed"), chosen)


def test_a_revision_rewrites_late_details_and_keeps_facts_and_notes() -> None:
    first = render.body(call(notes="Line one\n\nLine two", summary="old"), ANN)
    later = call(summary="new", transcript="Hello")
    revised = render.revise(first, later)
    assert revised.startswith(first.split("\n\n")[0])
    assert "Notes:\nLine one\n\nLine two" in revised
    assert "Summary:\nnew" in revised and "old" not in revised
    assert revised.endswith("Transcript:\nHello")


def test_a_revision_with_its_own_notes_replaces_the_written_ones() -> None:
    first = render.body(call(notes="typed then"), ANN)
    assert "typed now" in render.revise(first, call(notes="typed now"))
    assert "typed then" not in render.revise(first, call(notes="typed now"))


def test_rich_text_escapes_outside_text_and_joins_with_breaks() -> None:
    text = render.body(call(notes="<b>a</b>\nb"), LogTarget(), style=render.RICH)
    assert "Notes:<br>&lt;b&gt;a&lt;/b&gt;<br>b" in text
    assert "\n" not in text
    revised = render.revise(text, call(summary="s & t"), style=render.RICH)
    assert revised.endswith("Summary:<br>s &amp; t") and "&lt;b&gt;" in revised
