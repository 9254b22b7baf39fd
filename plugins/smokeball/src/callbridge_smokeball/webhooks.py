"""Smokeball's webhook notifications: the subscription, the signature, what one means.

The host's intake (``callbridge serve``) receives them; this module is what it needs
from the plugin. Smokeball signs a notification with ``Signature`` = hex
HMAC-SHA256(subscription key, ``"{Timestamp}|{RequestId}|{client id}"``), where
``Timestamp`` (a header, .NET ticks) is when it was sent. The body is **not** part
of what is signed: a notification is trusted for its ``RequestId`` and time only,
and what it reports is checked by a read before anything is marked failed.

Every write of the plugin carries ``RequestId: <marker>:<step>``, which Smokeball
returns in the webhooks the write causes: a ``*.created`` event confirms the
accepted write of that step, an ``error`` event reports it failed.

The hooks of hook API 2.1 (``app_events``) are at the end: the subscription is made
with ``POST /webhooks`` and a key of the plugin's own, checked with
``GET /webhooks/{id}`` (Smokeball's subscriptions do not expire, but are removed when
the connection's refresh token expires or access is revoked), and each request
verified and read into work for the host.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from callbridge.connections import credentials_from_env
from callbridge.context import HookContext
from callbridge.errors import AppEventRefused, NotFound
from callbridge.models import (
    AppRequest,
    AppSubscription,
    MatterChanged,
    WriteConfirmed,
    WriteFailed,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from callbridge_smokeball.api import from_ticks

#: The event types the plugin subscribes to.
EVENT_TYPES = ("contact.created", "fee.created", "task.created", "memo.created", "error")
#: The host's event markers (``cb1-…``, keyed ``cb2-…``).
MARKER = re.compile(r"^cb\d+-[0-9a-f]{16,64}$")
#: How far a notification's Timestamp may be from now (replays outside it are refused).
TOLERANCE = timedelta(minutes=5)


class WebhookRefused(ValueError):
    """A notification that is not Smokeball's, or too old; the message names why only."""


class Notification(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    account_id: str | None = Field(default=None, alias="accountId")
    subscription_id: str | None = Field(default=None, alias="subscriptionId")
    type: str
    source: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    timestamp: int | None = None


@dataclass(frozen=True)
class WriteReport:
    """What a notification says of one of the plugin's writes."""

    marker: str
    step: str
    outcome: Literal["created", "failed"]
    record_id: str | None
    reason: str | None = None  # for a failure: the resource's name, never Smokeball's text


def subscription(url: str, key: str, name: str = "callbridge") -> dict[str, Any]:
    """The body of ``POST /webhooks`` for the events the plugin reads."""
    return {"name": name, "eventTypes": list(EVENT_TYPES), "eventNotificationUrl": url,
            "key": key}


def signature(key: str, timestamp: str, request_id: str, client_id: str) -> str:
    message = f"{timestamp}|{request_id}|{client_id}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return ""


def verify(headers: Mapping[str, str], *, key: str, client_id: str, now: datetime) -> str:
    """Check a notification's signature and time; its ``RequestId``.

    Raises :class:`WebhookRefused` for a missing or wrong signature, or a
    ``Timestamp`` that is not ticks or is more than :data:`TOLERANCE` from ``now``.
    """
    given = _header(headers, "Signature")
    timestamp = _header(headers, "Timestamp")
    request_id = _header(headers, "RequestId")
    if not given or not timestamp:
        raise WebhookRefused("the Signature or Timestamp header is missing")
    expected = signature(key, timestamp, request_id, client_id)
    if not hmac.compare_digest(given.lower(), expected):
        raise WebhookRefused("the Signature does not match")
    try:
        sent = from_ticks(int(timestamp))
    except (ValueError, OverflowError):
        raise WebhookRefused("the Timestamp is not .NET ticks") from None
    if abs(now - sent) > TOLERANCE:
        raise WebhookRefused("the Timestamp is too far from now (a replay?)")
    return request_id


def report(notification: Notification, request_id: str) -> WriteReport | None:
    """What the notification says of the plugin's write, or None when it is not about one
    (another integration's change, a user's, or an event type the plugin does not read)."""
    marker, _, step = request_id.rpartition(":")
    if not MARKER.match(marker) or not step:
        return None
    if notification.type == "error":
        name = str(notification.payload.get("resourceName") or "record")[:40]
        resource = notification.payload.get("resourceId")
        return WriteReport(marker, step, "failed", str(resource) if resource else None,
                           reason=f"Smokeball could not write the {name}")
    if notification.type.endswith(".created"):
        record = notification.payload.get("id")
        return WriteReport(marker, step, "created", str(record) if record else None)
    return None


# --- the app-events hooks (hook API 2.1) ----------------------------------------------------

#: Record kinds whose ids are the plain Smokeball id (others are ``matterId/recordId``).
_PLAIN_IDS = ("task", "contact")


def _subscription(data: Mapping[str, Any], key: str) -> AppSubscription:
    sub_id = str(data.get("id") or "")
    if not sub_id:
        raise NotFound("Smokeball's answer to POST /webhooks holds no subscription id")
    types = data.get("eventTypes") or list(EVENT_TYPES)
    return AppSubscription(id=sub_id, secret=str(data.get("key") or key),
                           events=tuple(str(t) for t in types))


async def subscribe(ctx: HookContext, url: str) -> AppSubscription:
    """``POST /webhooks`` for :data:`EVENT_TYPES`, with a key of our own to sign with."""
    key = secrets.token_hex(32)
    response = await ctx.http.post("/webhooks", json=subscription(url, key))
    return _subscription(response.json(), key)


async def renew(ctx: HookContext, current: AppSubscription, url: str) -> AppSubscription:
    """The subscription if Smokeball still has it, pointing at ``url``; else a new one."""
    try:
        data = (await ctx.http.get(f"/webhooks/{current.id}")).json()
    except NotFound:
        return await subscribe(ctx, url)
    if data.get("eventNotificationUrl") != url or \
            not set(EVENT_TYPES) <= set(data.get("eventTypes") or ()):
        return await subscribe(ctx, url)
    return current


def _client_id(ctx: HookContext) -> str:
    """The OAuth client id Smokeball signs with: the connection's own (from the environment
    as the host reads it)."""
    return credentials_from_env(ctx.settings).client_id or ""


def verify_request(ctx: HookContext, request: AppRequest, current: AppSubscription) -> None:
    if not current.secret:
        raise AppEventRefused("the subscription has no key to check the Signature with")
    try:
        verify(request.headers, key=current.secret, client_id=_client_id(ctx),
               now=request.received_at)
    except WebhookRefused as exc:
        field = "timestamp" if "Timestamp" in str(exc) and "Signature" not in str(exc) \
            else "signature"
        raise AppEventRefused(str(exc), field=field) from None


def notification(body: bytes) -> Notification | None:
    """The body as a notification (Smokeball's samples wrap it in ``body``); None if unreadable."""
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("body"), dict) and "type" not in data:
        data = data["body"]
    try:
        return Notification.model_validate(data)
    except ValidationError:
        return None


def _record_id(kind: str, payload: Mapping[str, Any], record: str | None) -> str | None:
    """The id in the form the plugin's Record has it, when the payload allows."""
    if record is None:
        return None
    if kind in _PLAIN_IDS:
        return record
    matter = payload.get("matterId")
    return f"{matter}/{record}" if matter else None


def parse(request: AppRequest) -> list[WriteConfirmed | WriteFailed | MatterChanged]:
    """What a verified notification says of the plugin's writes (nothing for others')."""
    note = notification(request.body)
    request_id = request.header("RequestId") or ""
    if note is None or not request_id:
        return []
    said = report(note, request_id)
    if said is None:
        return []
    record_id = _record_id(said.step, note.payload, said.record_id)
    if said.outcome == "failed":
        return [WriteFailed(marker=said.marker, kind=said.step, record_id=record_id,
                            reason=said.reason or "Smokeball could not do the write")]
    return [WriteConfirmed(marker=said.marker, kind=said.step, record_id=record_id)]
