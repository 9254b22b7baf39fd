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
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
