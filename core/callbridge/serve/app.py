"""The ASGI app: every route module's routes, the worker and the scheduler in its lifespan.

Adding routes = a module with ``def routes(state: ServerState) -> list[BaseRoute]`` and
its name in :data:`ROUTE_MODULES`. The intake's requests (``POST /v1/sources/...``, the
busiest by far) go straight to its handler, before Starlette's routing and middleware
(:class:`ServerApp`); it answers its own errors the same way. Errors are JSON: ``{"error": {"field", "problem"}}``
(:func:`callbridge.serve.state.json_error`; an :class:`callbridge.serve.auth.ApiError`
raised in a route becomes one).

The lifespan starts the engine's loop (:meth:`callbridge.engine.Engine.serve`: the worker
and the scheduler) unless the state says intake only, and a watcher that re-reads the
settings file when it changes. On shutdown (after uvicorn has stopped taking requests
and finished those in flight) nothing more is claimed; the deliveries being worked are
finished within ``serve.shutdown_grace_seconds``, and any still running then are
stopped and their leases given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from callbridge.clock import Clock
from callbridge.engine import Engine
from callbridge.errors import ConfigError
from callbridge.quarantine import Quarantine
from callbridge.runtime import Runtime
from callbridge.serve import intake
from callbridge.serve.auth import EXCEPTION_HANDLERS
from callbridge.serve.metrics import Metrics
from callbridge.serve.state import ServerState, json_error

log = logging.getLogger("callbridge.serve")

#: The modules whose ``routes(state)`` make the server's URL space.
ROUTE_MODULES: tuple[str, ...] = (
    "callbridge.serve.health",
    "callbridge.serve.intake",
    "callbridge.serve.openapi",
    "callbridge.serve.operator",
    "callbridge.serve.oauth",
    "callbridge.serve.history",
    "callbridge.serve.actions",
    "callbridge.serve.apps",
)
#: How often the settings file is looked at for a change (seconds).
SETTINGS_POLL = 2.0


def make_state(runtime: Runtime, *, engine: Engine | None = None, clock: Clock | None = None,
               base_url: str = "http://127.0.0.1:8080", worker: bool = True) -> ServerState:
    """A :class:`ServerState` for ``runtime``: its engine (or ``engine``), quarantine and
    metrics (counting the engine's hook calls, 429s and outcomes)."""
    engine = engine or runtime.engine(**({"clock": clock} if clock is not None else {}))
    settings = runtime.settings.current()
    metrics = Metrics()
    metrics.attach(engine)
    return ServerState(runtime=runtime, engine=engine, clock=clock or engine.clock,
                       quarantine=Quarantine(engine.ledger, settings.quarantine),
                       metrics=metrics, base_url=settings.serve.public_url or base_url,
                       worker=worker)


def collect_routes(state: ServerState) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for name in ROUTE_MODULES:
        module = importlib.import_module(name)
        routes.extend(module.routes(state))
    return routes


async def _http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    if status == 404:
        return json_error(404, "(path)", "no such endpoint")
    if status == 405:
        return json_error(405, "(method)", "not allowed on this endpoint")
    detail = exc.detail if isinstance(exc, HTTPException) else "refused"
    return json_error(status, "(request)", str(detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    return json_error(500, "(server)", "an internal error; it has been logged")


class ServerApp(Starlette):
    """The server's app: Starlette, with the intake's requests handed to its handler first."""

    def __init__(self, state: ServerState) -> None:
        super().__init__(routes=collect_routes(state), lifespan=lambda app: lifespan(state),
                         exception_handlers={HTTPException: _http_error,
                                             Exception: _server_error, **EXCEPTION_HANDLERS})
        self.intake: intake.SourceIntake | None = state.extra.get(intake.__name__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.intake is not None and (found := intake.match(scope)) is not None:
            await self.intake.handle(scope, receive, send, *found)
            return
        await super().__call__(scope, receive, send)


def build_app(state: ServerState) -> Starlette:
    """The server's ASGI app."""
    return ServerApp(state)


@contextlib.asynccontextmanager
async def lifespan(state: ServerState) -> AsyncIterator[None]:
    stop = asyncio.Event()
    state.extra["stop"] = stop
    tasks = [asyncio.create_task(watch_settings(state, stop), name="callbridge-settings")]
    if state.worker:
        tasks.append(asyncio.create_task(state.engine.serve(stop), name="callbridge-worker"))
    try:
        yield
    finally:
        state.extra["stopping"] = True
        stop.set()
        grace = state.runtime.settings.current().serve.shutdown_grace_seconds
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:  # work still running past the grace: stopped, leases given back
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s stopped with %s", task.get_name(), type(task.exception()).__name__)
        await state.engine.aclose()


async def watch_settings(state: ServerState, stop: asyncio.Event) -> None:
    """Re-read the settings file when it changes (a change applies from the next event)."""
    settings = state.runtime.settings
    while not stop.is_set():
        if settings.path is not None:  # off the event loop: only changed tenant files are read
            with contextlib.suppress(ConfigError, OSError):  # reported by the source
                done = await asyncio.to_thread(settings.refresh)
                state.engine.forget_tenants(done.tenants)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SETTINGS_POLL)
