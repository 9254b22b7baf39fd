"""The ``aircall`` source: call webhooks, authenticated by the webhook's token in the body.

The samples (tests/data/sources/aircall.json) are events as Aircall posts them: one call
from creation to its end, a missed call, a voicemail, an outbound call, a withheld
caller, and an event of another resource."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from callbridge.events import AnyEvent, CallEvent, newest
from callbridge.settings import TenantSettings
from callbridge.sources.aircall import AircallSource
from callbridge.sources.base import SourceAdapter, SourceRefused, SourceRequest, load_adapter

SAMPLES = json.loads((Path(__file__).parent / "data" / "sources" / "aircall.json").read_text())
TOKEN, OLD, URL = SAMPLES["token"], SAMPLES["old_token"], SAMPLES["url"]
NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
ACME = TenantSettings(default_region="US", own_numbers=["+1 212 555 0100"])
SOURCE = AircallSource()


def request(body: str | dict[str, Any], content_type: str = "application/json") -> SourceRequest:
    raw = body if isinstance(body, str) else json.dumps(body)
    return SourceRequest(headers={"content-type": content_type}, body=raw.encode(), url=URL,
                         received_at=NOW, source="aircall")


def sample(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        next(s for s in SAMPLES["requests"] if s["name"] == name)["body"])
    return body


def changed(name: str, **data: Any) -> dict[str, Any]:
    """A sample with fields of its call changed (None sets null)."""
    body = sample(name)
    body["data"].update(data)
    return body


def parsed(body: str | dict[str, Any]) -> AnyEvent:
    (event,) = SOURCE.parse(request(body), "acme", ACME)
    return event


def refused(body: str | dict[str, Any]) -> SourceRefused:
    with pytest.raises(SourceRefused) as caught:
        SOURCE.parse(request(body), "acme", ACME)
    return caught.value


def test_the_aircall_format_is_an_installed_source_adapter() -> None:
    adapter = load_adapter("aircall")
    assert isinstance(adapter, AircallSource) and isinstance(adapter, SourceAdapter)


# --- the token ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", SAMPLES["requests"], ids=lambda c: c["name"])
def test_each_sample_carries_the_webhooks_token(case: dict[str, Any]) -> None:
    SOURCE.verify(request(case["body"]), [TOKEN], NOW)


def test_another_token_is_refused() -> None:
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(request(sample("missed")), ["another-token"], NOW)
    assert (caught.value.status, caught.value.field) == (401, "token")


@pytest.mark.parametrize("token", [None, "", 42, ["aircall-test-webhook-token-0000"]])
def test_a_missing_or_malformed_token_is_refused(token: Any) -> None:
    body = sample("missed")
    if token is None:
        del body["token"]
    else:
        body["token"] = token
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(request(body), [TOKEN], NOW)
    assert (caught.value.status, caught.value.field) == (401, "token")


def test_a_token_that_only_begins_like_the_webhooks_is_refused() -> None:
    body = sample("missed")
    body["token"] = TOKEN[:-1]
    with pytest.raises(SourceRefused):
        SOURCE.verify(request(body), [TOKEN], NOW)


def test_during_a_rotation_the_previous_webhooks_token_is_accepted_then_no_longer() -> None:
    rotated = request(SAMPLES["rotated"]["body"])
    SOURCE.verify(rotated, [TOKEN, OLD], NOW)
    with pytest.raises(SourceRefused):
        SOURCE.verify(rotated, [TOKEN], NOW)


@pytest.mark.parametrize(("body", "content_type", "field"), [
    ("token=x", "application/x-www-form-urlencoded", "Content-Type"),
    ("{not json", "application/json", "(json)"),
    ("[1, 2]", "application/json", "(body)"),
])
def test_a_body_that_is_not_one_json_event_is_refused(body: str, content_type: str,
                                                       field: str) -> None:
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(request(body, content_type), [TOKEN], NOW)
    assert (caught.value.status, caught.value.field) == (400, field)


# --- mapping -------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in SAMPLES["requests"] if c["expect"]],
                         ids=lambda c: c["name"])
def test_each_sample_reads_as_the_event_it_stands_for(case: dict[str, Any]) -> None:
    event = parsed(case["body"])
    assert isinstance(event, CallEvent)
    assert (event.tenant, event.source) == ("acme", "aircall")
    expect = dict(case["expect"])
    if expect.pop("withheld", False):
        assert event.external.kind.value == "withheld" and not event.external.matchable
    for key, value in expect.items():
        assert str(getattr(event, key)) == str(value), key


def test_an_event_of_another_resource_is_acknowledged_with_nothing_to_store() -> None:
    assert SOURCE.parse(request(sample("another resource")), "acme", ACME) == []


@pytest.mark.parametrize(("data", "expected"), [
    ({"status": "initial"}, ("ringing", None)),
    ({"status": "answered", "answered_at": 1772463608}, ("in_progress", None)),
    ({"status": "answered"}, ("in_progress", None)),
    ({"status": "done", "ended_at": 1772463700}, ("ended", "missed")),
    ({"status": "done", "answered_at": 1772463608, "ended_at": 1772463700}, ("ended", "completed")),
    ({"status": "done", "ended_at": 1772463700,
      "voicemail": "https://aircall-voicemails.example.com/v.mp3"}, ("ended", "voicemail")),
    ({"status": "initial", "ended_at": 1772463700}, ("ended", "missed")),  # ended_at is enough
])
def test_each_state_of_a_call_maps_to_a_state_and_outcome(
        data: dict[str, Any], expected: tuple[str, str | None]) -> None:
    base = {"answered_at": None, "ended_at": None, "voicemail": None, "recording": None}
    event = parsed(changed("answered: created", **{**base, **data}))
    assert isinstance(event, CallEvent)
    assert (event.state.value, event.outcome.value if event.outcome else None) == expected


def test_a_call_reads_its_people_and_times() -> None:
    event = parsed(sample("answered: ended"))
    assert isinstance(event, CallEvent)
    assert (event.external.e164, event.external.name) == ("+12125550142", "Dana Whitfield")
    assert (event.internal.email, event.internal.number) == ("ann@acme.example", "+12125550100")
    assert event.started_at == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    assert event.talk_seconds == 192 and event.duration_seconds == 200
    assert event.recording_url == "https://aircall-recordings.example.com/calls/31001.mp3"


def test_a_voicemail_is_the_calls_recording() -> None:
    event = parsed(sample("voicemail"))
    assert isinstance(event, CallEvent)
    assert event.recording_url == "https://aircall-voicemails.example.com/calls/31003.mp3"


def test_revisions_in_any_order_end_as_the_last_event_of_the_ended_call() -> None:
    names = ["created", "ringing on an agent", "answered", "hung up", "ended"]
    copies = [parsed(sample(f"answered: {n}")) for n in names]
    for order in itertools.permutations(copies):
        kept = order[0]
        for given in order[1:]:
            kept = newest(kept, given)
        assert isinstance(kept, CallEvent)
        assert kept.state.value == "ended" and kept.outcome == "completed"
        # call.ended comes after call.hungup: its recording is kept, whatever the order
        assert kept.sequence == copies[-1].sequence and kept.recording_url


def test_the_tenant_is_the_sources_whatever_the_body_says() -> None:
    body = changed("missed", tenant="other")
    body["tenant"] = "other"
    assert parsed(body).tenant == "acme"


# --- bad input: a clear error naming the field, never a value -------------------------


@pytest.mark.parametrize(("data", "field"), [
    ({"id": None}, "data.id"),
    ({"id": True}, "data.id"),
    ({"direction": "sideways"}, "data.direction"),
    ({"started_at": None}, "data.started_at"),
    ({"started_at": "2026-03-02T15:00:00Z"}, "data.started_at"),
    ({"answered_at": -5}, "data.answered_at"),
    ({"status": "done", "ended_at": None}, "data.ended_at"),
    ({"ended_at": 1772463000}, "data.ended_at"),  # before it started
    ({"raw_digits": "+1 212 555 01"}, "data.raw_digits"),
    ({"raw_digits": 2125550142}, "data.raw_digits"),
    ({"user": {"email": "not an address"}}, "data.user.email"),
    ({"user": "ann"}, "data.user"),
    ({"number": {"digits": "12"}}, "data.number.digits"),
    ({"recording": "ftp://files.example.com/r.mp3"}, "data.recording"),
])
def test_a_bad_call_field_is_named_and_its_value_never_echoed(data: dict[str, Any],
                                                               field: str) -> None:
    exc = refused(changed("missed", **data))
    assert exc.status == 422 and exc.field == field, exc.problems
    text = f"{exc} {exc.problems}"
    assert "555" not in text and "not an address" not in text


@pytest.mark.parametrize(("envelope", "field"), [
    ({"event": None}, "event"),
    ({"resource": 7}, "resource"),
    ({"timestamp": "soon"}, "timestamp"),
    ({"data": None}, "data"),
    ({"data": [1]}, "data"),
])
def test_a_bad_envelope_field_is_named(envelope: dict[str, Any], field: str) -> None:
    body = sample("missed")
    body.update(envelope)
    exc = refused(body)
    assert (exc.status, exc.field) == (422, field)
