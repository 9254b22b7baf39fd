"""The sandbox's webhooks: subscriptions (``/webhooks``) and the signed notifications it sends.

As Smokeball documents them: ``POST /webhooks`` with ``name``, ``eventTypes``,
``eventNotificationUrl`` and an optional ``key`` answers the subscription (its ``id``
and ``key``); every accepted write queues the event it causes (its ``*.created``
event, or ``error`` for a write that fails), due when the write is done; the
notification is a POST of ``{accountId, subscriptionId, type, source, payload,
timestamp}`` with the headers ``Timestamp`` (.NET ticks), ``RequestId`` (the
write's) and ``Signature`` (hex HMAC-SHA256 with the subscription's key of
``Timestamp|RequestId|client id``). Sending is explicit (:func:`send_due`, which a
test calls) or, under ``callbridge sandbox smokeball``, a thread (:func:`start_sender`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callbridge_smokeball.api import to_ticks
from callbridge_smokeball.sandbox.dtos import problem
from callbridge_smokeball.sandbox.state import SandboxState
from callbridge_smokeball.webhooks import signature

Handler = Callable[[Request], Awaitable[Response]]
#: The event types the sandbox sends (a subscription to another is refused).
KNOWN_TYPES = frozenset({"contact.created", "fee.created", "task.created", "memo.created",
                         "activitycode.created", "matter.updated", "error"})
#: Attempts at sending one notification before it is dropped.
ATTEMPTS = 3


def webhook_routes(st: SandboxState, gated: Callable[[Handler], Handler]) -> list[Route]:
    """``/webhooks`` and ``/webhooks/{id}``, behind the sandbox's gate (key, token, bucket)."""

    def public(sub: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in sub.items() if not k.startswith("_")}

    async def collection(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"value": [public(s) for s in st.webhooks.values()]})
        try:
            data = await request.json()
        except ValueError:
            return problem(400, "Bad Request", "the body is not JSON")
        if not isinstance(data, dict):
            return problem(400, "Bad Request", "the body must be a JSON object")
        unknown = set(data) - {"name", "eventTypes", "eventNotificationUrl", "key"}
        types = data.get("eventTypes")
        url = data.get("eventNotificationUrl")
        if unknown:
            return problem(400, "Bad Request", f"unknown webhook field(s): {', '.join(sorted(unknown))}")
        if not data.get("name") or not isinstance(url, str) or not url.startswith("http"):
            return problem(400, "Bad Request", "name and eventNotificationUrl are required")
        if not isinstance(types, list) or not types or not set(types) <= KNOWN_TYPES:
            return problem(400, "Bad Request", "eventTypes must list known event types")
        now = st.now().isoformat()
        sub = {"id": st.new_id(), "key": str(data.get("key") or ""), "name": data["name"],
               "eventTypes": list(types), "eventNotificationUrl": url,
               "createdDateUtc": now, "updatedDateUtc": now}
        st.webhooks[sub["id"]] = sub
        return JSONResponse(public(sub))

    async def one(request: Request) -> Response:
        sub = st.webhooks.get(request.path_params["id"])
        if sub is None:
            return problem(404, "Not Found")
        if request.method == "DELETE":
            del st.webhooks[sub["id"]]
            return Response(status_code=204)
        return JSONResponse(public(sub))

    return [Route("/webhooks", gated(collection), methods=["GET", "POST"]),
            Route("/webhooks/{id}", gated(one), methods=["GET", "DELETE"])]


def _body(st: SandboxState, sub: dict[str, Any], item: dict[str, Any], ticks: int) -> bytes:
    return json.dumps({"accountId": st.account_id, "subscriptionId": sub["id"],
                       "type": item["type"], "source": "API", "payload": item["payload"],
                       "timestamp": ticks}).encode()


def send_due(st: SandboxState, *, client: httpx2.Client | None = None) -> list[int]:
    """Send every queued notification whose write is done to each subscription for its
    type; the statuses answered. A notification nobody answers with 2xx is tried again
    on the next call, up to :data:`ATTEMPTS` times."""
    now = st.clock.monotonic()
    due = [item for item in st.outbox if item["due"] <= now]
    statuses: list[int] = []
    own = client is None
    http = client or httpx2.Client(timeout=10.0)
    try:
        for item in due:
            delivered = True
            for sub in list(st.webhooks.values()):
                if item["type"] not in sub["eventTypes"]:
                    continue
                ticks = to_ticks(st.now())
                request_id = item["request_id"] or ""
                headers = {"Content-Type": "application/json", "Timestamp": str(ticks),
                           "RequestId": request_id}
                if sub["key"]:
                    headers["Signature"] = signature(sub["key"], str(ticks), request_id,
                                                     st.client_id)
                try:
                    status = http.post(sub["eventNotificationUrl"], headers=headers,
                                       content=_body(st, sub, item, ticks)).status_code
                except httpx2.HTTPError:
                    status = 0
                statuses.append(status)
                st.sent.append({"type": item["type"], "request_id": request_id,
                                "status": status})
                delivered = delivered and 200 <= status < 300
            item["attempts"] = item.get("attempts", 0) + 1
            if delivered or item["attempts"] >= ATTEMPTS:
                st.outbox.remove(item)
    finally:
        if own:
            http.close()
    return statuses


def start_sender(st: SandboxState, *, every: float = 0.5) -> threading.Event:
    """Send due notifications from a daemon thread every ``every`` seconds; set the
    returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        with httpx2.Client(timeout=10.0) as client:
            while not stop.wait(every):
                send_due(st, client=client)

    threading.Thread(target=loop, name="smokeball-sandbox-webhooks", daemon=True).start()
    return stop
