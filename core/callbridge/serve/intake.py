"""``POST /v1/sources/{tenant}/{source}``: events from a phone system, over HTTP.

In order, each refusal a 4xx JSON error naming the field and the problem (never a value
received), kept in the quarantine (``callbridge quarantine``), never processed:

1. the tenant and its source must be in the settings (404, the same answer for both);
2. the body may be at most ``serve.max_body_bytes`` (413), arriving within
   ``serve.read_timeout_seconds`` (408);
3. the source's adapter checks the signature with the source's keys (401);
4. the adapter reads the body into events of the URL's tenant (400, 403 for a body naming
   another tenant, 422 for an invalid event).

Then the events are stored in the ledger (a commit each) and only then acknowledged
(200, with each event's result: new, duplicate or revision). A duplicate changes nothing;
revisions in any order end as in order (the ledger keeps the furthest state, then the
highest sequence, and never drops a late detail).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, NamedTuple

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from callbridge.clock import Clock
from callbridge.errors import ConfigError
from callbridge.quarantine import Refused
from callbridge.serve.state import ServerState
from callbridge.settings import SourceSettings
from callbridge.settings_source import secret_variable
from callbridge.sources.base import SourceRefused, SourceRequest, load_adapter

log = logging.getLogger("callbridge.serve.intake")

PATH = "/v1/sources/{tenant}/{source}"
#: The quarantine's ``origin`` of a refused request.
ORIGIN = "serve"


class Body(NamedTuple):
    """A request's body as read: at most the limit and one byte of it."""

    data: bytes
    too_long: bool
    """Longer than the limit (declared or sent)."""
    late: bool
    """Not all there within the read timeout."""
    cut: bool
    """The sender closed the connection before its end."""


async def read_body(request: Request, limit: int, clock: Clock, within: float) -> Body:
    """The body, reading at most ``limit`` + 1 bytes for at most ``within`` seconds."""
    declared = request.headers.get("content-length", "")
    chunks: list[bytes] = []
    size = 0
    cut = False

    async def pull() -> None:
        nonlocal size, cut
        try:
            async for chunk in request.stream():
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    return  # enough to refuse it and keep its beginning
        except ClientDisconnect:
            cut = True

    reader = asyncio.ensure_future(pull())
    timer = asyncio.ensure_future(clock.sleep(within))
    await asyncio.wait({reader, timer}, return_when=asyncio.FIRST_COMPLETED)
    timer.cancel()
    late = not reader.done()
    if late:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    else:
        reader.result()
    too_long = size > limit or (declared.isdigit() and int(declared) > limit)
    return Body(b"".join(chunks)[:limit + 1], too_long, late, cut)


#: The ``reason`` label of ``callbridge_requests_refused_total``, by status.
REASONS = {400: "malformed", 401: "unauthenticated", 403: "other_tenant", 404: "unknown_source",
           408: "too_slow", 413: "too_large", 422: "invalid_event", 503: "not_configured"}


def secrets_of(source: SourceSettings) -> list[str]:
    """The source's keys from the environment or the secrets file: the current one first."""
    names = [source.secret_env, source.previous_secret_env]
    return [value for name in names if name and (value := secret_variable(name))]


def routes(state: ServerState) -> list[BaseRoute]:
    engine = state.engine
    clock = state.clock

    async def refuse(status: int, field: str, problem: str, body: bytes, tenant: str | None,
                     started: float, problems: tuple[tuple[str, str], ...] = ()) -> Response:
        reason = "; ".join(f"{f}: {p}" for f, p in (problems or ((field, problem),)))
        try:
            await engine.db(state.quarantine.keep, [Refused(
                raw=body, reason=f"{status} {reason}"[:2000], origin=ORIGIN, tenant=tenant)],
                now=clock.now())
        except Exception as exc:  # answer the sender even when the quarantine cannot keep it
            log.error("a refused request could not be quarantined (%s)", type(exc).__name__)
        state.metrics.inc("requests_refused", status=str(status),
                          reason=REASONS.get(status, "other"))
        state.metrics.observe("ack_seconds", clock.monotonic() - started)
        error: dict[str, Any] = {"field": field, "problem": problem}
        if len(problems) > 1:
            error["problems"] = [{"field": f, "problem": p} for f, p in problems]
        return JSONResponse({"error": error}, status_code=status)

    async def receive(request: Request) -> Response:
        started = clock.monotonic()
        received_at = clock.now()
        tenant_key = request.path_params["tenant"]
        source_key = request.path_params["source"]
        settings = state.runtime.settings.current()
        limit = settings.serve.max_body_bytes
        read = await read_body(request, limit, clock, settings.serve.read_timeout_seconds)
        body = read.data
        tenant = settings.tenants.get(tenant_key)
        source = tenant.sources.get(source_key) if tenant is not None else None
        known = tenant_key if tenant is not None else None
        if tenant is None or source is None:
            return await refuse(404, "(path)", "no such source for this tenant", body, known,
                                started)
        if read.cut:
            return await refuse(400, "(body)", "the connection closed before the body ended",
                                body, known, started)
        if read.late:
            return await refuse(408, "(body)", f"not received within "
                                f"{settings.serve.read_timeout_seconds:g} s", body, known, started)
        if read.too_long:
            return await refuse(413, "(body)", f"larger than {limit} bytes", body, known, started)
        keys = secrets_of(source)
        try:
            adapter = load_adapter(source.format)
        except ConfigError as exc:
            log.error("source %s/%s: %s", tenant_key, source_key, exc)
            return await refuse(503, "(source)", "the source's format is not installed on the "
                                                 "server", body, known, started)
        if not keys:
            log.error("source %s/%s: its key is not set (%s)", tenant_key, source_key,
                      source.secret_env)
            return await refuse(503, "(source)", "the source's key is not set on the server",
                                body, known, started)
        base = (settings.serve.public_url or state.base_url).rstrip("/")
        query = f"?{request.url.query}" if request.url.query else ""
        incoming = SourceRequest(
            headers={k.lower(): v for k, v in request.headers.items()}, body=body,
            url=f"{base}{request.url.path}{query}", received_at=received_at, source=source_key,
            options=source.options, replay_window=settings.serve.replay_window_seconds)
        try:
            adapter.verify(incoming, keys, received_at)
            events = adapter.parse(incoming, tenant_key, tenant)
        except SourceRefused as exc:
            return await refuse(exc.status, exc.field, exc.problem, body, known, started,
                                exc.problems)
        try:
            stored = await engine.ingest_many(events) if events else []
        except Exception as exc:  # the ledger failed: not acknowledged, the sender retries
            log.error("source %s/%s: events not stored (%s)", tenant_key, source_key,
                      type(exc).__name__)
            state.metrics.inc("requests_refused", status="503", reason="not_stored")
            return JSONResponse({"error": {"field": "(server)", "problem": (
                "the events could not be stored; nothing was kept: send them again later")}},
                status_code=503, headers={"Retry-After": "5"})
        if any(kept.status != "duplicate" for kept in stored):
            engine.scheduler.wake()  # new work: not left until the next known due time
        for event, kept in zip(events, stored, strict=True):
            state.metrics.inc("events_received", tenant=tenant_key, source=source_key,
                              kind=event.kind, result=kept.status)
        state.metrics.observe("ack_seconds", clock.monotonic() - started)
        return JSONResponse({"received": len(stored), "events": [
            {"id": event.id, "kind": event.kind, "result": kept.status}
            for event, kept in zip(events, stored, strict=True)]})

    return [Route(PATH, receive, methods=["POST"], name="source_intake")]
