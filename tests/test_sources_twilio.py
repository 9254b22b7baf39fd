"""The ``twilio`` source: voice and messaging status callbacks, signed with the auth token.

The samples (tests/data/sources/twilio.json, written by tools/gen_source_samples.py) are
callbacks as Twilio posts them, each
signature computed by Twilio's own Python library, so the check here is against Twilio's
reading of its scheme, not only against ours."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from callbridge.events import AnyEvent, CallEvent, SmsEvent, newest
from callbridge.settings import TenantSettings
from callbridge.sources.base import SourceAdapter, SourceRefused, SourceRequest, load_adapter
from callbridge.sources.twilio import CALL_STATES, MESSAGE_STATES, TwilioSource, signature

SAMPLES = json.loads((Path(__file__).parent / "data" / "sources" / "twilio.json").read_text())
TOKEN, OLD, URL = SAMPLES["auth_token"], SAMPLES["old_auth_token"], SAMPLES["url"]
NOW = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
ACME = TenantSettings(default_region="US", own_numbers=["+1 212 555 0100"])
SOURCE = TwilioSource()


def request(body: str, *, sig: str | None = None, url: str = URL,
            content_type: str = "application/x-www-form-urlencoded",
            options: dict[str, Any] | None = None,
            settings: str | None = None) -> SourceRequest:
    headers = {"content-type": content_type}
    if settings is not None:
        headers["x-twilio-webhooks-signature-settings"] = settings
    if sig is not None:
        headers["x-twilio-signature"] = sig
    return SourceRequest(headers=headers, body=body.encode(), url=url, received_at=NOW,
                         source="twilio", options=options or {})


def sample(name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(s for s in SAMPLES["requests"] if s["name"] == name)
    return found


def params(name: str, **changes: str | None) -> str:
    """A sample's form with fields changed (None removes one)."""
    form = dict(parse_qsl(sample(name)["body"], keep_blank_values=True))
    for key, value in changes.items():
        if value is None:
            form.pop(key, None)
        else:
            form[key] = value
    return urlencode(form)


def parsed(body: str, **kwargs: Any) -> AnyEvent:
    (event,) = SOURCE.parse(request(body, **kwargs), "acme", ACME)
    return event


def refused(body: str, **kwargs: Any) -> SourceRefused:
    with pytest.raises(SourceRefused) as caught:
        SOURCE.parse(request(body, **kwargs), "acme", ACME)
    return caught.value


def no_number_in(exc: SourceRefused) -> None:
    text = f"{exc} {exc.problems}"
    assert "555" not in text and "+1" not in text


# --- the adapter is found by its format name ----------------------------------------


def test_the_twilio_format_is_an_installed_source_adapter() -> None:
    adapter = load_adapter("twilio")
    assert isinstance(adapter, TwilioSource) and isinstance(adapter, SourceAdapter)
    assert adapter.name == "twilio"


# --- signatures ----------------------------------------------------------------------


@pytest.mark.parametrize("case", SAMPLES["requests"], ids=lambda c: c["name"])
def test_each_sample_signed_by_twilios_library_verifies(case: dict[str, Any]) -> None:
    form = parse_qsl(case["body"], keep_blank_values=True)
    assert signature(URL, form, TOKEN) == case["signature"]
    SOURCE.verify(request(case["body"], sig=case["signature"]), [TOKEN], NOW)


def test_a_signature_made_with_another_token_is_refused() -> None:
    case = sample("inbound answered: completed")
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(request(case["body"], sig=case["signature"]), ["another-token"], NOW)
    assert (caught.value.status, caught.value.field) == (401, "X-Twilio-Signature")


def test_a_missing_signature_is_refused() -> None:
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(request(sample("outbound busy")["body"]), [TOKEN], NOW)
    assert caught.value.status == 401 and "missing" in caught.value.problem


@pytest.mark.parametrize("tamper", ["CallStatus", "From", "added", "removed", "url"])
def test_a_tampered_request_is_refused(tamper: str) -> None:
    case = sample("inbound answered: completed")
    body, url = case["body"], URL
    if tamper == "CallStatus":
        body = params(case["name"], CallStatus="busy")
    elif tamper == "From":
        body = params(case["name"], From="+12125550143")
    elif tamper == "added":
        body += "&RecordingUrl=https%3A%2F%2Fother.example.com%2Fr"
    elif tamper == "removed":
        body = params(case["name"], CallerName=None)
    else:  # the same body posted to another firm's URL
        url = URL.replace("/acme/", "/other/")
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(request(body, sig=case["signature"], url=url), [TOKEN], NOW)
    assert caught.value.status == 401


def test_during_a_rotation_the_previous_token_is_accepted_then_no_longer() -> None:
    rotated = SAMPLES["rotated"]
    req = request(rotated["body"], sig=rotated["signature"])
    SOURCE.verify(req, [TOKEN, OLD], NOW)  # the current token first, the old one accepted
    with pytest.raises(SourceRefused):
        SOURCE.verify(req, [TOKEN], NOW)  # the rotation is over


def test_under_a_webhooks_rule_the_sha256_signature_with_the_shared_key_verifies() -> None:
    case = SAMPLES["sha256"]
    signed = request(case["body"], sig=case["signature"], settings=case["settings"])
    SOURCE.verify(signed, [case["shared_key"]], NOW)
    form = parse_qsl(case["body"])
    assert signature(URL, form, case["shared_key"], "HMAC_SHA256") == case["signature"]
    with pytest.raises(SourceRefused):  # the same signature read as SHA-1
        SOURCE.verify(request(case["body"], sig=case["signature"]), [case["shared_key"]], NOW)
    with pytest.raises(SourceRefused):  # the auth token is not the rule's key
        SOURCE.verify(signed, [TOKEN], NOW)


def test_an_algorithm_twilio_does_not_use_is_refused() -> None:
    case = SAMPLES["sha256"]
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(request(case["body"], sig=case["signature"],
                              settings="key=k,algorithm=HMAC_MD5"), [case["shared_key"]], NOW)
    assert (caught.value.status, caught.value.field) == (401, "X-Twilio-Webhooks-Signature-Settings")


def test_the_url_with_its_default_port_verifies_as_twilio_signs_either() -> None:
    case = sample("outbound failed")
    with_port = URL.replace("example.com/", "example.com:443/")
    SOURCE.verify(request(case["body"], sig=case["signature"], url=with_port), [TOKEN], NOW)
    signed_with_port = signature(with_port, parse_qsl(case["body"]), TOKEN)
    SOURCE.verify(request(case["body"], sig=signed_with_port), [TOKEN], NOW)


def test_a_signature_never_matches_another_port() -> None:
    case = sample("outbound failed")
    with pytest.raises(SourceRefused):
        SOURCE.verify(request(case["body"], sig=case["signature"],
                              url=URL.replace("example.com/", "example.com:8443/")), [TOKEN], NOW)


# --- mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize("case", SAMPLES["requests"], ids=lambda c: c["name"])
def test_each_sample_reads_as_the_event_it_stands_for(case: dict[str, Any]) -> None:
    event = parsed(case["body"])
    assert (event.tenant, event.source) == ("acme", "twilio")
    for key, value in case["expect"].items():
        assert str(getattr(event, key)) == str(value), key


@pytest.mark.parametrize(("status", "expected"), sorted(CALL_STATES.items()))
def test_each_call_status_maps_to_a_state_and_outcome(
        status: str, expected: tuple[str, str | None]) -> None:
    event = parsed(params("inbound answered: completed", CallStatus=status))
    assert isinstance(event, CallEvent)
    assert (event.state.value, event.outcome.value if event.outcome else None) == expected
    assert event.is_final == (expected[0] == "ended")


@pytest.mark.parametrize(("status", "expected"), sorted(MESSAGE_STATES.items()))
def test_each_message_status_maps_to_a_delivery_status(status: str, expected: str | None) -> None:
    body = params("outgoing message: sent", MessageStatus=status, SmsStatus=status)
    event = parsed(body)
    assert isinstance(event, SmsEvent)
    assert (event.status.value if event.status else None) == expected
    assert event.direction.value == ("inbound" if expected is None else "outbound")


def test_a_call_reads_its_parties_by_direction() -> None:
    inbound = parsed(sample("inbound answered: ringing")["body"])
    outbound = parsed(sample("outbound busy")["body"])
    assert (inbound.direction.value, inbound.external.e164, inbound.internal.number) == (
        "inbound", "+12125550142", "+12125550100")
    assert (outbound.direction.value, outbound.external.e164, outbound.internal.number) == (
        "outbound", "+12125550142", "+12125550100")
    assert inbound.external.name == "DANA WHITFIELD"


def test_a_completed_call_was_answered_its_duration_before_it_ended() -> None:
    event = parsed(sample("inbound answered: completed")["body"])
    assert isinstance(event, CallEvent)
    assert event.ended_at == datetime(2026, 3, 2, 15, 3, 12, tzinfo=UTC)
    assert event.answered_at == event.ended_at - timedelta(seconds=185)
    assert event.talk_seconds == 185
    assert event.recording_url and event.recording_url.startswith("https://api.twilio.com/")


def test_an_incoming_message_keeps_its_text() -> None:
    event = parsed(sample("incoming message")["body"])
    assert isinstance(event, SmsEvent)
    assert event.body == "Running ten minutes late, sorry." and event.sent_at == NOW


def test_revisions_in_any_order_end_as_the_completed_call() -> None:
    copies = [parsed(sample(f"inbound answered: {n}")["body"])
              for n in ("ringing", "in progress", "completed")]
    for order in itertools.permutations(copies):
        kept = order[0]
        for given in order[1:]:
            kept = newest(kept, given)
        assert isinstance(kept, CallEvent)
        assert (kept.state.value, kept.sequence, kept.outcome) == ("ended", 2, "completed")


@pytest.mark.parametrize(("name", "changes"), [
    ("outbound dialled: completed", {"To": "client:ann"}),  # put through to a softphone
    ("inbound answered: ringing", {"From": "sip:ann@acme.sip.example.com"}),
    ("outgoing message: sent", {"To": "client:ann"}),
])
def test_a_leg_with_no_one_outside_the_firm_is_acknowledged_with_nothing(
        name: str, changes: dict[str, str]) -> None:
    assert SOURCE.parse(request(params(name, **changes)), "acme", ACME) == []


def test_a_softphones_call_to_a_number_is_logged_from_its_dialled_leg() -> None:
    event = parsed(params("outbound dialled: completed", From="client:ann"))
    assert (event.direction.value, event.external.e164, event.internal.number) == (
        "outbound", "+12125550142", None)


def test_the_tenant_is_the_sources_whatever_the_form_says() -> None:
    event = parsed(params("outbound busy", tenant="other", Tenant="other"))
    assert event.tenant == "acme"


def test_a_callback_of_another_account_is_refused_when_the_account_is_set() -> None:
    body = sample("outbound busy")["body"]
    assert parsed(body, options={"account_sid": SAMPLES["account_sid"]}).tenant == "acme"
    exc = refused(body, options={"account_sid": "AC" + "1" * 32})
    assert (exc.status, exc.field) == (403, "AccountSid")


# --- bad input: a clear error naming the field, never a value -------------------------


@pytest.mark.parametrize(("changes", "field"), [
    ({"CallSid": None}, "CallSid"),
    ({"CallStatus": None}, "CallStatus"),
    ({"CallStatus": "exploded"}, "CallStatus"),
    ({"Direction": "sideways"}, "Direction"),
    ({"From": None}, "From"),
    ({"From": "+1 212 555 01"}, "From"),
    ({"To": None}, "To"),
    ({"Timestamp": "yesterday at 5"}, "Timestamp"),
    ({"SequenceNumber": "-3"}, "SequenceNumber"),
    ({"CallDuration": "long"}, "CallDuration"),
    ({"RecordingUrl": "ftp://files.example.com/r"}, "RecordingUrl"),
    ({"CallerName": "x" * 300}, "CallerName"),
])
def test_a_bad_call_field_is_named_and_its_value_never_echoed(
        changes: dict[str, str | None], field: str) -> None:
    exc = refused(params("inbound answered: completed", **changes))
    assert exc.status == 422 and exc.field == field, exc.problems
    no_number_in(exc)


def test_a_message_without_a_status_names_it() -> None:
    exc = refused(params("outgoing message: sent", MessageStatus=None, SmsStatus=None))
    assert (exc.status, exc.field) == (422, "SmsStatus")


def test_neither_a_call_nor_a_message_is_refused() -> None:
    exc = refused(urlencode({"AccountSid": SAMPLES["account_sid"], "From": "+12125550142"}))
    assert (exc.status, exc.field) == (422, "CallSid")
    no_number_in(exc)


@pytest.mark.parametrize(("body", "content_type", "field"), [
    ('{"CallSid": "CA1"}', "application/json", "Content-Type"),
    ("CallSid=CA1&&&=", "application/x-www-form-urlencoded", "(body)"),
    ("&".join(f"F{i}=1" for i in range(300)), "application/x-www-form-urlencoded", "(body)"),
])
def test_a_body_that_is_not_twilios_form_is_refused_before_the_signature(
        body: str, content_type: str, field: str) -> None:
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(request(body, sig="x", content_type=content_type), [TOKEN], NOW)
    assert (caught.value.status, caught.value.field) == (400, field)


def test_a_body_that_is_not_utf8_is_refused() -> None:
    req = SourceRequest(headers={"x-twilio-signature": "x"}, body=b"From=\xff\xfe", url=URL,
                        received_at=NOW)
    with pytest.raises(SourceRefused) as caught:
        SOURCE.verify(req, [TOKEN], NOW)
    assert (caught.value.status, caught.value.field) == (400, "(body)")
