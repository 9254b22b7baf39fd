"""App events over HTTP: ``POST /v1/apps/{tenant}/{app}/events`` (:mod:`callbridge.appevents`).

An app that declares ``app_events`` sends its requests here (the URL its
subscription names). The app's plugin verifies each one; a request that is not
the app's gets 401 and is kept in the quarantine, never parsed; a tenant or app
that is not configured gets 404, also kept. A verified request is parsed and its
work done before the 200, whose body counts what it did; a repeated request
changes nothing. Apps are subscribed to send their events only when the setting
``serve.public_url`` says where the server is reached (read afresh, so a settings
change applies): an app cannot reach a loopback address.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from callbridge.appevents import PATH, UnknownTarget
from callbridge.errors import AppEventRefused
from callbridge.models import AppRequest
from callbridge.quarantine import Refused
from callbridge.serve.state import json_error as error

if TYPE_CHECKING:
    from callbridge.clock import Clock
    from callbridge.engine import Engine
    from callbridge.quarantine import Quarantine

log = logging.getLogger("callbridge.serve.apps")

#: The largest body an app may send (bytes); a larger one is refused with 413.
MAX_BODY = 1024 * 1024
#: The quarantine's name for where these requests came from.
ORIGIN = "app_event"


class AppsState(Protocol):
    """What this module needs of the server's state (``callbridge.serve.state.ServerState``)."""

    engine: Engine
    clock: Clock
    quarantine: Quarantine




async def _body(request: Request) -> bytes | None:
    """The body, or None once it passes :data:`MAX_BODY` (what was read is kept)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        chunks.append(chunk)
        if size > MAX_BODY:
            return None
    return b"".join(chunks)


def routes(state: AppsState) -> list[BaseRoute]:
    """The app-events route (subscriptions are made with the setting ``serve.public_url``)."""
    events = state.engine.app_events
    engine = state.engine

    async def keep(raw: bytes, reason: str, tenant: str | None) -> None:
        await engine.db(state.quarantine.keep,
                        [Refused(raw=raw, reason=reason, origin=ORIGIN, tenant=tenant)],
                        now=state.clock.now())

    async def receive(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        app = request.path_params["app"]
        known = tenant if tenant in engine.config.tenants else None
        body = await _body(request)
        if body is None:
            await keep(b"", f"body: larger than {MAX_BODY} bytes", known)
            return error(413, "body", f"larger than {MAX_BODY} bytes")
        app_request = AppRequest(
            headers={k.lower(): v for k, v in request.headers.items()}, body=body,
            url=str(request.url), received_at=state.clock.now())
        try:
            done = await events.receive(tenant, app, app_request)
        except UnknownTarget as exc:
            await keep(body, f"{exc.field}: {exc.problem}", known)
            return error(404, exc.field, exc.problem)
        except AppEventRefused as exc:
            await keep(body, f"{exc.field}: {exc.problem}", known)
            log.info("app event for %s/%s refused: %s", known or "?", app, exc.problem)
            return error(401, exc.field, exc.problem)
        except Exception as exc:  # the plugin failed: the app may send it again
            log.warning("app event for %s/%s could not be read: %s", known or "?", app,
                        type(exc).__name__)
            return error(500, "body", "the app's plugin could not read the request")
        return JSONResponse(done.as_json())

    return [Route(PATH, receive, methods=["POST"])]
