"""The sandbox's webhooks, as Clio's reference describes them.

``POST /webhooks.json`` (https URLs only; ``model``, ``fields`` and ``events``
required or checked; ``expires_at`` at most 31 days ahead, 3 days by default) makes a
``pending`` webhook with a ``shared_secret`` and queues the handshake: a POST to the
URL carrying ``X-Hook-Secret``. It is enabled by ``PUT /webhooks/{id}/activate`` with
that secret in ``X-Hook-Secret``, or by a handshake answered with the same header.
``PATCH /webhooks/{id}.json`` moves ``expires_at`` (renewal); ``DELETE`` removes it.

Deliveries are not sent by the sandbox itself: each is queued in
``SandboxState.outbox`` (:class:`Delivery`: url, headers, raw body), signed with
``X-Hook-Signature`` (hex HMAC-SHA256 of the body keyed with the shared secret), so a
test delivers them where and when it wants, once, twice, or never (a lost webhook).
A matter's deliveries are queued by :meth:`SandboxState.touch` through
:func:`matter_changed`: ``matter_closed`` / ``matter_opened`` / ``matter_pended`` when
its status changed, ``updated`` otherwise, to every enabled webhook of the model that
has not expired and subscribes to that event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callbridge_clio.sandbox.common import Refused, body, enum, ids_filter, one, page
from callbridge_clio.sandbox.state import SandboxState, stamp

API = "/api/v4"
MODELS = frozenset({"activity", "bill", "calendar_entry", "clio_payments_payment",
                    "communication", "contact", "document", "folder", "matter", "task"})
EVENTS = frozenset({"created", "updated", "deleted", "matter_opened", "matter_pended",
                    "matter_closed"})
STATUS_EVENTS = {"closed": "matter_closed", "open": "matter_opened", "pending": "matter_pended"}
DEFAULT_LIFE = timedelta(days=3)
MAX_LIFE = timedelta(days=31)


@dataclass
class Delivery:
    """One request Clio would make to a webhook's URL."""

    url: str
    headers: dict[str, str]
    body: bytes
    webhook_id: int
    event: str = field(default="")


def _when(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Refused(422, "UnprocessableEntity", "expires_at must be an ISO-8601 time") from None


def _expiry(st: SandboxState, value: Any) -> str:
    now = st.clock.now()
    at = _when(value) if value is not None else now + DEFAULT_LIFE
    if at <= now or at > now + MAX_LIFE:
        raise Refused(422, "UnprocessableEntity",
                      "expires_at must be in the future and at most 31 days away")
    return stamp(at)


def sign(secret: str, raw: bytes) -> str:
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def matter_changed(st: SandboxState, matter: dict[str, Any], before: str | None) -> None:
    """Queue the deliveries of a matter's change (its status was ``before``)."""
    now = st.clock.now()
    status = str(matter.get("status") or "").lower()
    event = STATUS_EVENTS.get(status, "updated") if status != (before or "").lower() \
        else "updated"
    for hook in list(st.webhooks.values()):
        if hook["model"] != "matter" or hook["status"] != "enabled" \
                or _when(hook["expires_at"]) <= now:
            continue
        wanted = hook.get("events") or ["created", "updated", "deleted"]
        chosen = event if event in wanted else ("updated" if "updated" in wanted else None)
        if chosen is None:
            continue
        names = [n.strip() for n in hook["fields"].split(",") if n.strip()]
        data = {n: matter.get(n) for n in names}
        raw = json.dumps({"data": data, "meta": {"event": chosen, "webhook_id": hook["id"]}},
                         separators=(",", ":")).encode()
        st.outbox.append(Delivery(
            url=hook["url"], body=raw, webhook_id=hook["id"], event=chosen,
            headers={"content-type": "application/json",
                     "x-hook-signature": sign(hook["shared_secret"], raw)}))


def routes(st: SandboxState, api: Any) -> list[Route]:
    async def webhooks(request: Request) -> Response:
        if request.method == "POST":
            data = await body(request)
            for need in ("url", "model", "fields"):
                if not data.get(need):
                    raise Refused(422, "UnprocessableEntity", f"{need} is required")
            if not str(data["url"]).startswith("https://"):
                raise Refused(422, "UnprocessableEntity", "url must use the https scheme")
            enum(str(data["model"]), MODELS, "model", status=422)
            if len(str(data["fields"])) > 1000:
                raise Refused(422, "UnprocessableEntity", "fields is longer than 1000 characters")
            for event in data.get("events") or []:
                enum(event, EVENTS, "events", status=422)
            wid = st.next_id()
            secret = secrets.token_hex(16)
            st.webhooks[wid] = {
                "id": wid, "etag": f'"{wid}-1"', "url": data["url"], "model": data["model"],
                "fields": data["fields"], "events": data.get("events") or [],
                "status": "pending", "expires_at": _expiry(st, data.get("expires_at")),
                "shared_secret": secret, "user": {"id": st.authorised_user},
                "created_at": st.now(), "updated_at": st.now()}
            st.outbox.append(Delivery(url=data["url"], body=b"", webhook_id=wid,
                                      event="handshake",
                                      headers={"x-hook-secret": secret,
                                               "x-hook-id": str(wid)}))
            return one(request, st.webhooks[wid], "webhook", 201)
        return page(st, request, ids_filter(list(st.webhooks.values()), request), "webhook")

    async def webhook(request: Request) -> Response:
        hook = st.webhooks[int(request.path_params["id"])]
        if request.method == "DELETE":
            del st.webhooks[hook["id"]]
            return Response(status_code=204)
        if request.method == "PATCH":
            data = await body(request)
            changes: dict[str, Any] = {}
            if "expires_at" in data:
                changes["expires_at"] = _expiry(st, data["expires_at"])
            for key in ("fields", "events"):
                if key in data:
                    changes[key] = data[key]
            st.touch(st.webhooks, hook["id"], **changes)
        return one(request, hook, "webhook")

    async def activate(request: Request) -> Response:
        hook = st.webhooks[int(request.path_params["id"])]
        given = request.headers.get("x-hook-secret", "")
        if not hmac.compare_digest(given, hook["shared_secret"]):
            raise Refused(403, "Forbidden", "the X-Hook-Secret does not match")
        st.touch(st.webhooks, hook["id"], status="enabled")
        return one(request, hook, "webhook")

    table = [("/webhooks.json", webhooks, ["GET", "POST"]),
             ("/webhooks/{id:int}.json", webhook, ["GET", "PATCH", "DELETE"]),
             ("/webhooks/{id:int}/activate", activate, ["PUT"])]
    return [Route(f"{API}{path}", api(handler), methods=methods)
            for path, handler, methods in table]


def handshake_answered(st: SandboxState, delivery: Delivery, echoed: str | None) -> None:
    """The URL answered a handshake: an echoed ``X-Hook-Secret`` enables the webhook."""
    hook = st.webhooks.get(delivery.webhook_id)
    if hook is not None and echoed and hmac.compare_digest(echoed, hook["shared_secret"]):
        st.touch(st.webhooks, hook["id"], status="enabled")
