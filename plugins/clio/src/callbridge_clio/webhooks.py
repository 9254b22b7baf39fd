"""Clio's webhooks for the host's app events (hook API 2.1): matter changes, for the
closed-matter sync, so a closed matter is sent soon after it closes instead of at the
next poll.

* subscribe: ``POST /webhooks.json`` for the model ``matter``, the events
  ``matter_closed`` and ``updated``, the fields ``id,status,close_date,updated_at``,
  expiring in :data:`LIFE` (Clio's limit is 31 days); Clio answers with the webhook's
  ``shared_secret`` and sends a handshake carrying it in ``X-Hook-Secret``. The plugin
  activates the webhook at once with ``PUT /webhooks/{id}/activate`` (Clio's "delayed"
  confirmation), so the handshake needs no answer beyond 200.
* renew: ``PATCH /webhooks/{id}.json`` with a new ``expires_at``; a webhook Clio no
  longer has (404) is made again.
* verify: ``X-Hook-Signature`` is the hex HMAC-SHA256 of the raw body keyed with the
  shared secret, compared in constant time; the handshake is accepted when its
  ``X-Hook-Secret`` is the subscription's. Clio signs no timestamp, so a replayed
  request is not refused here: it only makes the host read the matter again.
* parse: the handshake means nothing; a delivery names its matter
  (:class:`~callbridge.models.MatterChanged`, ``closed`` from the event or status).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timedelta

from callbridge.context import HookContext
from callbridge.errors import AppEventRefused, NotFound
from callbridge.models import AppRequest, AppSubscription, MatterChanged

from callbridge_clio.api import ClioApi

#: How long a webhook is asked to live (Clio allows 31 days at most).
LIFE = timedelta(days=28)
EVENTS = ("matter_closed", "updated")
FIELDS = "id,status,close_date,updated_at"
WEBHOOK_FIELDS = "id,status,shared_secret,expires_at,events"


def _when(value: object) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


async def subscribe(ctx: HookContext, url: str) -> AppSubscription:
    api = ClioApi(ctx.http)
    expires = ctx.clock.now() + LIFE
    made = await api.create("/webhooks.json", WEBHOOK_FIELDS, {
        "url": url, "model": "matter", "events": list(EVENTS), "fields": FIELDS,
        "expires_at": expires.isoformat()})
    secret = str(made.get("shared_secret") or "")
    if made.get("status") != "enabled" and secret:
        await ctx.http.put(f"/webhooks/{made['id']}/activate", params={"fields": "id,status"},
                           headers={"X-Hook-Secret": secret},
                           extensions={"callbridge_idempotent": True})
    return AppSubscription(id=str(made["id"]), expires_at=_when(made.get("expires_at")) or expires,
                           secret=secret or None, events=EVENTS)


async def renew(ctx: HookContext, subscription: AppSubscription, url: str) -> AppSubscription:
    api = ClioApi(ctx.http)
    expires = ctx.clock.now() + LIFE
    try:
        kept = await api.update(f"/webhooks/{subscription.id}.json", "id,expires_at,status",
                                {"expires_at": expires.isoformat()})
    except NotFound:
        return await subscribe(ctx, url)
    return subscription.model_copy(update={"expires_at": _when(kept.get("expires_at")) or expires})


def verify(request: AppRequest, subscription: AppSubscription) -> None:
    secret = (subscription.secret or "").encode()
    if not secret:
        raise AppEventRefused("the subscription has no shared secret", field="subscription")
    handshake = request.header("x-hook-secret")
    if handshake is not None:
        if not hmac.compare_digest(handshake.encode(), secret):
            raise AppEventRefused("the handshake's secret is not the subscription's",
                                  field="x-hook-secret")
        return
    given = request.header("x-hook-signature")
    if not given:
        raise AppEventRefused("the request is not signed", field="x-hook-signature")
    expected = hmac.new(secret, request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.strip().lower()):
        raise AppEventRefused("the signature does not match", field="x-hook-signature")


def parse(request: AppRequest) -> list[MatterChanged]:
    if request.header("x-hook-secret") is not None:
        return []  # the handshake
    try:
        payload = json.loads(request.body)
    except ValueError:
        return []
    data = payload.get("data") if isinstance(payload, dict) else None
    meta = payload.get("meta") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or data.get("id") is None:
        return []
    event = str((meta or {}).get("event") or "")
    status = str(data.get("status") or "").lower()
    closed = True if event == "matter_closed" or status == "closed" else (
        False if status in ("open", "pending") else None)
    return [MatterChanged(matter_id=str(data["id"]), closed=closed,
                          changed_at=_when(data.get("updated_at")))]
