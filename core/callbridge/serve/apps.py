"""App events over HTTP: ``POST /v1/apps/{tenant}/{app}/events`` (:mod:`callbridge.appevents`).

An app that declares ``app_events`` sends its requests here (the URL its
subscription names). The app's plugin verifies each one; a request that is not
the app's gets 401 and is kept in the quarantine, never parsed; a tenant or app
that is not configured gets 404, a body over ``serve.max_body_bytes`` 413 and one
that does not arrive within ``serve.read_timeout_seconds`` 408, each also kept. A
verified request is parsed and its work done before the 200, whose body counts what
it did; a repeated request changes nothing. Apps are subscribed to send their events only when the setting
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
from callbridge.serve.intake import REASONS, Deadlines, read_body
from callbridge.serve.state import json_error as error

if TYPE_CHECKING:
    from callbridge.clock import Clock
    from callbridge.engine import Engine
    from callbridge.quarantine import Quarantine
    from callbridge.runtime import Runtime
    from callbridge.serve.metrics import Metrics

log = logging.getLogger("callbridge.serve.apps")

#: The quarantine's name for where these requests came from.
ORIGIN = "app_event"


class AppsState(Protocol):
    """What this module needs of the server's state (``callbridge.serve.state.ServerState``)."""

    runtime: Runtime
    engine: Engine
    clock: Clock
    quarantine: Quarantine
    metrics: Metrics


def routes(state: AppsState) -> list[BaseRoute]:
    """The app-events route (subscriptions are made with the setting ``serve.public_url``)."""
    events = state.engine.app_events
    engine = state.engine
    deadlines = Deadlines(state.clock)

    async def refuse(status: int, field: str, problem: str, raw: bytes,
                     tenant: str | None) -> Response:
        try:
            await engine.db(state.quarantine.keep, [Refused(
                raw=raw, reason=f"{status} {field}: {problem}", origin=ORIGIN, tenant=tenant)],
                now=state.clock.now())
        except Exception as exc:  # answer the app even when the quarantine cannot keep it
            log.error("a refused app event could not be quarantined (%s)", type(exc).__name__)
        state.metrics.inc("requests_refused", status=str(status),
                          reason=REASONS.get(status, "other"))
        return error(status, field, problem)

    async def receive(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        app = request.path_params["app"]
        received_at = state.clock.now()
        settings = state.runtime.settings.current()
        known = tenant if tenant in settings.tenants else None
        limit = settings.serve.max_body_bytes
        read = await read_body(request.receive, limit, deadlines,
                               settings.serve.read_timeout_seconds,
                               request.headers.get("content-length", ""))
        body = read.data
        if read.cut:
            return await refuse(400, "(body)", "the connection closed before the body ended",
                                body, known)
        if read.late:
            return await refuse(408, "(body)", f"not received within "
                                f"{settings.serve.read_timeout_seconds:g} s", body, known)
        if read.too_long:
            return await refuse(413, "(body)", f"larger than {limit} bytes", body, known)
        app_request = AppRequest(
            headers={k.lower(): v for k, v in request.headers.items()}, body=body,
            url=str(request.url), received_at=received_at)
        try:
            done = await events.receive(tenant, app, app_request)
        except UnknownTarget as exc:
            return await refuse(404, exc.field, exc.problem, body, known)
        except AppEventRefused as exc:
            log.info("app event for %s/%s refused: %s", known or "?", app, exc.problem)
            return await refuse(401, exc.field, exc.problem, body, known)
        except Exception as exc:  # the plugin failed: the app may send it again
            log.warning("app event for %s/%s could not be read: %s", known or "?", app,
                        type(exc).__name__)
            return error(500, "(body)", "the app's plugin could not read the request")
        state.metrics.inc("app_events_received", app=app)
        return JSONResponse(done.as_json())

    return [Route(PATH, receive, methods=["POST"])]
