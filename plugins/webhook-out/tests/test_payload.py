"""The body and its signature: what a receiver checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from callbridge.testing.scenarios import SAMPLE_CLOSED_MATTER as MATTER
from callbridge_webhook_out.payload import (
    BadSignature,
    ClosedMatterWebhook,
    body,
    json_schema,
    payload,
    signature,
    verify,
)

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)


def raw() -> bytes:
    return body(payload(idempotency_id="cbm-1", created_at=NOW, tenant="acme", source="clio",
                        client=MATTER.client, matter=MATTER))


def test_a_signature_verifies_and_any_change_to_the_body_or_secret_breaks_it() -> None:
    t = int(NOW.timestamp())
    header = signature("s3cret", t, raw())
    assert header.startswith(f"t={t},v1=")
    assert verify("s3cret", header, raw(), now=t + 10) == t
    with pytest.raises(BadSignature, match="does not match"):
        verify("s3cret", header, raw().replace(b"Dana", b"Dina"), now=t)
    with pytest.raises(BadSignature, match="does not match"):
        verify("other", header, raw(), now=t)


def test_an_old_or_malformed_signature_is_refused() -> None:
    t = int(NOW.timestamp())
    with pytest.raises(BadSignature, match="too far"):
        verify("s", signature("s", t, raw()), raw(), now=t + 301)
    for header in (None, "", "v1=abc", "t=x,v1=abc"):
        with pytest.raises(BadSignature):
            verify("s", header, raw(), now=t)


def test_a_second_v1_value_is_accepted_while_a_secret_rotates() -> None:
    t = int(NOW.timestamp())
    both = f"{signature('old', t, raw())},v1={signature('new', t, raw()).split('v1=')[1]}"
    assert verify("new", both, raw(), now=t) == t


def test_the_body_reads_back_as_the_versioned_schema() -> None:
    message = ClosedMatterWebhook.model_validate_json(raw())
    assert message.schema_ == "callbridge.closed_matter.v1" and message.id == "cbm-1"
    assert message.client.email == "dana@example.com" and str(message.matter.closed_on) == \
        "2026-01-05"
    schema = json_schema()
    assert "schema" in schema["properties"] and schema["additionalProperties"] is False  # type: ignore[index]
