"""SPEC §1 and issue point 1: events validated at the edge, JSON in and out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from callbridge.errors import EventValidationError
from callbridge.events import CallEvent, FaxEvent, PartyKind, SmsEvent, dump_event, parse_event

SENTINEL = "+12125550199"


def call(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "kind": "call", "id": "c-1", "tenant": "acme", "direction": "inbound",
        "external": {"number": "(212) 555-0142", "name": "Dana Whitfield"},
        "internal": {"email": "ann@example.com", "extension": "101"},
        "started_at": "2026-03-02T10:00:00-05:00", "answered_at": "2026-03-02T10:00:12-05:00",
        "ended_at": "2026-03-02T10:06:12-05:00", "outcome": "completed",
    }
    base.update(over)
    return base


def test_a_call_parses_with_its_number_in_e164() -> None:
    event = parse_event(call())
    assert isinstance(event, CallEvent)
    assert event.external.e164 == "+12125550142"
    assert event.talk_seconds == 360 and event.duration_seconds == 372


def test_json_round_trip_gives_the_same_event() -> None:
    event = parse_event(call(notes="asked about the hearing"))
    assert parse_event(dump_event(event)) == event


def test_the_default_region_reads_national_numbers() -> None:
    event = parse_event(call(external={"number": "020 7946 0018"}), region="GB")
    assert event.external.e164 == "+442079460018"


def test_region_comes_from_the_payloads_tenant() -> None:
    event = parse_event(call(tenant="london", external={"number": "020 7946 0018"}),
                        region_for={"london": "GB"}.__getitem__)
    assert event.external.e164 == "+442079460018"


def test_unknown_tenant_is_a_clear_error() -> None:
    with pytest.raises(EventValidationError, match="tenant: is not a configured tenant"):
        parse_event(call(tenant="nobody"), region_for={}.__getitem__)


@pytest.mark.parametrize("number", [None, "anonymous", "withheld", ""])
def test_withheld_caller_is_a_valid_party_without_number(number: str | None) -> None:
    event = parse_event(call(external={"number": number}))
    assert event.external.kind == PartyKind.WITHHELD
    assert event.external.e164 is None and not event.external.matchable


def test_short_code_sms_is_a_valid_party_that_never_matches() -> None:
    event = parse_event({"kind": "sms", "id": "s-1", "tenant": "acme", "direction": "inbound",
                         "external": {"number": "72345"}, "sent_at": "2026-03-02T10:00:00Z",
                         "body": "Your code is 1234"})
    assert isinstance(event, SmsEvent)
    assert event.external.kind == PartyKind.SHORT_CODE and not event.external.matchable


def test_fax_takes_a_document_as_base64_or_a_url_but_not_both() -> None:
    fax = {"kind": "fax", "id": "f-1", "tenant": "acme", "direction": "inbound",
           "external": {"number": "2125550142"}, "sent_at": "2026-03-02T10:00:00Z", "page_count": 2}
    event = parse_event({**fax, "document": {"content": "JVBERi0xLjQ="}})
    assert isinstance(event, FaxEvent) and event.document and event.document.content == b"%PDF-1.4"
    with pytest.raises(EventValidationError, match="exactly one of content"):
        parse_event({**fax, "document": {"content": "JVBERi0xLjQ=", "url": "https://example.com/f.pdf"}})


def test_a_bad_payload_names_every_bad_field_at_once() -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(call(direction="sideways", started_at="2026-03-02T10:00:00",
                         external={"number": "212 555 01"}, outcome="great"))
    locations = {p.location for p in info.value.problems}
    assert {"direction", "started_at", "external.number", "outcome"} <= locations
    assert "timezone" in str(info.value)


def test_errors_never_echo_the_number() -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(call(external={"number": SENTINEL + "99"}, direction="x"))
    text = str(info.value) + json.dumps([str(p) for p in info.value.problems])
    assert "2125550199" not in text and "555" not in text


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(EventValidationError, match="ended_at"):
        parse_event(call(ended_at="2026-03-02T10:06:12"))


def test_end_before_start_is_refused() -> None:
    with pytest.raises(EventValidationError, match="ended_at: is before started_at"):
        parse_event(call(ended_at="2026-03-02T09:00:00-05:00", answered_at=None))


def test_unknown_kind_and_unknown_fields_are_refused() -> None:
    with pytest.raises(EventValidationError, match="kind: must be one of"):
        parse_event(call(kind="email"))
    with pytest.raises(EventValidationError) as info:
        parse_event(call(colour="red", external={"number": "2125550142", "x-api-key": "s3cret"}))
    text = str(info.value)
    assert "(unknown field): is not a field of this object" in text
    assert "external.(unknown field)" in text
    assert "colour" not in text and "x-api-key" not in text and "s3cret" not in text


def test_not_json_is_a_clear_error() -> None:
    with pytest.raises(EventValidationError, match="not valid JSON"):
        parse_event("{not json")


def test_identity_and_marker_depend_on_tenant_source_kind_and_id() -> None:
    a = parse_event(call())
    b = parse_event(call(notes="richer"))
    c = parse_event(call(source="other-pbx"))
    assert a.key == ("acme", "default", "call", "c-1")
    assert a.marker == b.marker != c.marker
    assert a.marker.startswith("cb1-") and "acme" not in a.marker


def test_generic_caller_id_name_is_no_display_name() -> None:
    event = parse_event(call(external={"number": "2125550142", "name": "WIRELESS CALLER"}))
    assert event.external.display_name is None
