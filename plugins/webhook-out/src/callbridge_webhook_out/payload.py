"""The webhook's body (a versioned JSON schema) and its signature (Stripe's style).

Every request is a ``POST`` of one JSON object, :class:`ClosedMatterWebhook`, with:

* ``Content-Type: application/json``;
* ``Callbridge-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
  HMAC-SHA256, keyed with the shared secret, of ``"<t>.<raw body>"``;
* ``Idempotency-Key: <id>``: the same ``id`` as in the body, the same on every
  attempt of one send, so a receiver drops a repeat after a lost answer.

:func:`verify` is the receiver's side (the sandbox and the example in the docs use
the same steps): parse the header, recompute the HMAC over the raw bytes, compare in
constant time, and refuse a timestamp more than ``tolerance`` seconds away.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date, datetime
from typing import Literal

from callbridge.models import ClientContact, ClosedMatter
from pydantic import BaseModel, ConfigDict, Field

#: The schema's name and version; a change that is not additive gets a new version.
SCHEMA = "callbridge.closed_matter.v1"
SIGNATURE_HEADER = "Callbridge-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
#: How far a signature's timestamp may be from the receiver's clock (seconds).
TOLERANCE = 300


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WebhookClient(_Frozen):
    """The client, as sent."""

    id: str = Field(description="the contact's id in the source app")
    name: str | None = Field(default=None, description="the client's name")
    first_name: str | None = Field(default=None, description="the given name, when kept apart")
    last_name: str | None = Field(default=None, description="the family name, when kept apart")
    email: str | None = Field(default=None, description="the primary email address")
    phones: list[str] = Field(default_factory=list,
                              description="numbers, primary first, in E.164 where readable")


class WebhookMatter(_Frozen):
    """The closed matter, as sent."""

    id: str = Field(description="the matter's id in the source app")
    name: str | None = Field(default=None, description="its number or name")
    description: str | None = Field(default=None, description="what it was about")
    closed_on: date = Field(description="the day it was closed")


class ClosedMatterWebhook(_Frozen):
    """The body of every request (schema ``callbridge.closed_matter.v1``)."""

    schema_: Literal["callbridge.closed_matter.v1"] = Field(
        alias="schema", description="the schema's name and version")
    id: str = Field(description="the idempotency id: the same on every attempt of one send")
    type: Literal["closed_matter.client"] = Field(description="what happened")
    created_at: datetime = Field(description="when this attempt was made (UTC)")
    tenant: str = Field(description="the firm's key in callbridge's settings")
    source: str = Field(description="the app the matter was closed in (e.g. clio)")
    matter: WebhookMatter
    client: WebhookClient

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def payload(*, idempotency_id: str, created_at: datetime, tenant: str, source: str,
            client: ClientContact, matter: ClosedMatter) -> ClosedMatterWebhook:
    return ClosedMatterWebhook(
        schema_=SCHEMA, id=idempotency_id, type="closed_matter.client", created_at=created_at,
        tenant=tenant, source=source,
        matter=WebhookMatter(id=matter.id, name=matter.name, description=matter.description,
                             closed_on=matter.closed_on),
        client=WebhookClient(id=client.id, name=client.name, first_name=client.first_name,
                             last_name=client.last_name, email=client.email,
                             phones=list(client.phones)))


def body(message: ClosedMatterWebhook) -> bytes:
    """The raw JSON bytes that are sent and signed."""
    data = message.model_dump(mode="json", by_alias=True)
    return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()


def json_schema() -> dict[str, object]:
    """The body's JSON Schema (the page on closed matters shows it)."""
    return ClosedMatterWebhook.model_json_schema(by_alias=True)


def signature(secret: str, timestamp: int, raw: bytes) -> str:
    """The ``Callbridge-Signature`` header's value."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class BadSignature(ValueError):
    """A request whose signature is missing, malformed, wrong or too old."""


def verify(secret: str, header: str | None, raw: bytes, now: float, *,
           tolerance: float = TOLERANCE) -> int:
    """Check a received request's signature; its timestamp, or :class:`BadSignature`."""
    if not header:
        raise BadSignature("no signature header")
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        parts.setdefault(key, []).append(value)
    try:
        timestamp = int(parts["t"][0])
    except (KeyError, ValueError):
        raise BadSignature("the signature has no timestamp") from None
    if abs(now - timestamp) > tolerance:
        raise BadSignature("the signature's timestamp is too far from now")
    expected = signature(secret, timestamp, raw).split("v1=", 1)[1]
    if not any(hmac.compare_digest(expected, given) for given in parts.get("v1", [])):
        raise BadSignature("the signature does not match")
    return timestamp
