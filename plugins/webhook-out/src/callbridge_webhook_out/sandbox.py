"""A receiver of the signed webhook, as an ASGI app: what the tests send to.

It does what a receiver should: checks the signature over the raw body
(:func:`callbridge_webhook_out.payload.verify`, 400 when it fails), answers 200 with
``{"id": <idempotency id>}``, and keeps each idempotency id once, so a repeat after a
lost answer is answered 200 and dropped (``duplicates`` counts them). ``fail_next``
answers that many requests 503 first (a receiver that is down). Needs the ``sandbox``
extra (Starlette).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from callbridge.clock import SYSTEM, Clock
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from callbridge_webhook_out.payload import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    BadSignature,
    verify,
)

PATH = "/hooks/closed-matters"


@dataclass
class ReceiverState:
    """What the receiver got. ``received`` holds each accepted body by idempotency id."""

    secret: str
    clock: Clock = SYSTEM
    fail_next: int = 0
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    refused: int = 0
    requests: int = 0


def create_app(state: ReceiverState, *, clock: Clock | None = None) -> Starlette:
    if clock is not None:
        state.clock = clock

    async def receive(request: Request) -> JSONResponse:
        state.requests += 1
        raw = await request.body()
        try:
            verify(state.secret, request.headers.get(SIGNATURE_HEADER), raw,
                   state.clock.now().timestamp())
        except BadSignature as exc:
            state.refused += 1
            return JSONResponse({"error": str(exc)}, status_code=400)
        if state.fail_next > 0:
            state.fail_next -= 1
            return JSONResponse({"error": "the receiver is down"}, status_code=503)
        key = request.headers.get(IDEMPOTENCY_HEADER, "")
        if key in state.received:
            state.duplicates += 1
        else:
            state.received[key] = json.loads(raw)
        return JSONResponse({"id": key})

    app = Starlette(routes=[Route(PATH, receive, methods=["POST"])])
    app.state.receiver = state
    return app
