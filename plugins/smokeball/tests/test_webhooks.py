"""Smokeball's webhook notifications: the documented signature, replays, what one reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from callbridge.models import AppRequest, WriteConfirmed, WriteFailed
from callbridge_smokeball.api import to_ticks
from callbridge_smokeball.webhooks import (
    Notification,
    WebhookRefused,
    parse,
    report,
    signature,
    subscription,
    verify,
)

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
KEY, CLIENT = "sandbox-webhook-key", "sandbox-client"


def signed(request_id: str, at: datetime = NOW, key: str = KEY) -> dict[str, str]:
    ticks = str(to_ticks(at))
    return {"Signature": signature(key, ticks, request_id, CLIENT), "Timestamp": ticks,
            "RequestId": request_id}


def test_the_signature_is_the_documented_one() -> None:
    # Smokeball's worked example (its C# payload's client id).
    assert signature("ei7641529ue420n8b9aa", "637558795239278688",
                     "38583489-09c4-49ef-b58c-ef1b34208cca", "lou1qnn0llav95") == \
        "feb4b838a272884f6d2c2580b2c7ebb0b2f725b90e8baa6f9b5e1a17a9faec2d"


def test_a_signed_notification_passes_and_gives_its_request_id() -> None:
    assert verify(signed("cb1-0123456789abcdef:fee"), key=KEY, client_id=CLIENT, now=NOW) == "cb1-0123456789abcdef:fee"


@pytest.mark.parametrize(("headers", "why"), [
    ({"Timestamp": "1", "RequestId": "x"}, "missing"),
    ({**signed("cb1-0123456789abcdef:fee"), "RequestId": "cb1-0123456789abcdef:task"}, "does not match"),
    (signed("cb1-0123456789abcdef:fee", key="another-key"), "does not match"),
    (signed("cb1-0123456789abcdef:fee", at=NOW - timedelta(minutes=6)), "too far"),
])
def test_a_forged_or_replayed_notification_is_refused(headers: dict[str, str], why: str) -> None:
    with pytest.raises(WebhookRefused, match=why):
        verify(headers, key=KEY, client_id=CLIENT, now=NOW)


def test_created_and_error_events_report_on_the_plugins_writes_only() -> None:
    created = Notification.model_validate({"type": "fee.created", "payload": {"id": "f-1"}})
    failed = Notification.model_validate({"type": "error", "payload": {
        "message": "Matter does not belong to account", "resourceName": "fee",
        "resourceId": "f-2"}})
    done = report(created, "cb1-0123456789abcdef:fee")
    assert done is not None and (done.marker, done.step, done.outcome, done.record_id) == \
        ("cb1-0123456789abcdef", "fee", "created", "f-1")
    bad = report(failed, "cb1-0123456789abcdef:fee")
    assert bad is not None and bad.outcome == "failed" and bad.reason == \
        "Smokeball could not write the fee"
    assert report(created, "someone-else") is None
    keyed = report(created, "cb2-00112233445566778899aabbccddeeff:task")
    assert keyed is not None and keyed.step == "task"
    assert report(Notification(type="matter.updated"), "cb1-0123456789abcdef:fee") is None
    body = subscription("https://callbridge.example.com/hooks/smokeball", KEY)
    assert "error" in body["eventTypes"] and body["key"] == KEY


def _request(request_id: str, body: dict[str, object]) -> AppRequest:
    return AppRequest(headers={"requestid": request_id}, body=json.dumps(body).encode(),
                      url="https://cb.example.com/v1/apps/acme/smokeball/events", received_at=NOW)


def test_a_notification_is_read_into_work_for_the_host() -> None:
    marker = "cb2-00112233445566778899aabbccddeeff"
    fee = parse(_request(f"{marker}:fee", {"type": "fee.created",
                                           "payload": {"id": "f-1", "matterId": "m-1"}}))
    assert fee == [WriteConfirmed(marker=marker, kind="fee", record_id="m-1/f-1")]
    task = parse(_request(f"{marker}:task", {"type": "task.created", "payload": {"id": "t-1"}}))
    assert task == [WriteConfirmed(marker=marker, kind="task", record_id="t-1")]
    # Smokeball's documented sample wraps the notification in "body".
    [failed] = parse(_request(f"{marker}:fee", {"body": {"type": "error", "payload": {
        "message": "Matter does not belong to account", "resourceName": "fee",
        "resourceId": "f-2"}}}))
    assert isinstance(failed, WriteFailed) and failed.record_id is None
    assert "belong" not in failed.reason  # Smokeball's own words are not kept
    assert parse(_request("someone-else", {"type": "fee.created", "payload": {}})) == []
    assert parse(_request(f"{marker}:fee", {"type": 3})) == []
    assert parse(AppRequest(headers={}, body=b"not json", url="u", received_at=NOW)) == []
