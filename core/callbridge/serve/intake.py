"""``POST /v1/sources/{tenant}/{source}``: events from a phone system, over HTTP.

In order, each refusal a 4xx JSON error naming the field and the problem (never a value
received), kept in the quarantine (``callbridge quarantine``), never processed:

1. the tenant and its source must be in the settings (404, the same answer for both);
2. the body may be at most ``serve.max_body_bytes`` (413), arriving within
   ``serve.read_timeout_seconds`` (408);
3. the source's adapter checks the signature with the source's keys (401);
4. the adapter reads the body into events of the URL's tenant (400, 403 for a body naming
   another tenant, 422 for an invalid event).

Then the events are stored in the ledger and only then acknowledged (200, with each
event's result: new, duplicate or revision). A duplicate changes nothing; revisions in
any order end as in order (the ledger keeps the furthest state, then the highest
sequence, and never drops a late detail).

This is the server's busiest route, so it is a plain ASGI handler
(:class:`SourceIntake`): the app hands it its requests before Starlette's routing and
middleware (:mod:`callbridge.serve.app`); it catches its own errors (a JSON 500). The
events of requests arriving together are committed together (the ledger's group
commit), each request still answered only once its own events are committed. The read
timeout is one deadline per request, watched by one task for the whole server
(:class:`Deadlines`), not a timer per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

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
#: What the intake's paths begin with (then the tenant's key, a slash, the source's key).
PREFIX = "/v1/sources/"
#: The quarantine's ``origin`` of a refused request.
ORIGIN = "serve"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class Body(NamedTuple):
    """A request's body as read: at most the limit and one byte of it."""

    data: bytes
    too_long: bool
    """Longer than the limit (declared or sent)."""
    late: bool
    """Not all there within the read timeout."""
    cut: bool
    """The sender closed the connection before its end."""


class Deadlines:
    """Reads that must end by a deadline, watched by one task for the whole server.

    A read :meth:`enter`\\ s with its deadline and :meth:`leave`\\ s when done: a dictionary
    entry. Once per turn of the event loop, if a read is still open (its body had not all
    arrived), a watcher is started: it sleeps on the clock until the earliest deadline and
    cancels the reads past theirs (:meth:`overran` tells the read it was its deadline).
    When no read is open the watcher is stopped, so it never keeps a sleeper on the clock.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._open: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._target = math.inf
        self._looking = False

    def enter(self, within: float) -> asyncio.Task[Any]:
        """The current task reads until ``within`` seconds from now; the task."""
        task = asyncio.current_task()
        assert task is not None
        self._open[task] = self.clock.monotonic() + within
        if not self._looking:
            self._looking = True
            asyncio.get_running_loop().call_soon(self._look)
        return task

    def leave(self, task: asyncio.Task[Any]) -> None:
        self._open.pop(task, None)
        self._expired.discard(task)
        if not self._open and self._watcher is not None:
            self._watcher.cancel()
            self._watcher, self._target = None, math.inf

    def overran(self, task: asyncio.Task[Any]) -> bool:
        """Whether ``task``, cancelled, was cancelled for its deadline alone (then it is
        no longer cancelled and goes on)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        return task.uncancel() == 0

    def _look(self) -> None:
        self._looking = False
        if not self._open:
            return
        earliest = min(self._open.values())
        if self._watcher is None or earliest < self._target:
            if self._watcher is not None:
                self._watcher.cancel()
            self._target = earliest
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name="callbridge-intake-deadlines")

    async def _watch(self) -> None:
        while self._open:
            now = self.clock.monotonic()
            earliest = min(self._open.values())
            if earliest > now:
                self._target = earliest
                await self.clock.sleep(earliest - now)
                continue
            for task, deadline in list(self._open.items()):
                if deadline <= now:
                    del self._open[task]
                    self._expired.add(task)
                    task.cancel()
        self._watcher, self._target = None, math.inf


async def read_body(receive: Receive, limit: int, deadlines: Deadlines, within: float,
                    declared: str = "") -> Body:
    """The body, reading at most ``limit`` + 1 bytes for at most ``within`` seconds
    (``declared``: the request's Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    cut = late = False
    task = deadlines.enter(within)
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                cut = True
                break
            chunk = message.get("body", b"")
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
            if size > limit or not message.get("more_body", False):
                break  # all of it, or enough to refuse it and keep its beginning
    except asyncio.CancelledError:
        if not deadlines.overran(task):
            raise
        late = True
    finally:
        deadlines.leave(task)
    too_long = size > limit or (declared.isdigit() and int(declared) > limit)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return Body(data[:limit + 1], too_long, late, cut)


#: The ``reason`` label of ``callbridge_requests_refused_total``, by status.
REASONS = {400: "malformed", 401: "unauthenticated", 403: "other_tenant", 404: "unknown_source",
           408: "too_slow", 413: "too_large", 422: "invalid_event", 503: "not_configured"}
_JSON = (b"content-type", b"application/json")


def secrets_of(source: SourceSettings) -> list[str]:
    """The source's keys from the environment or the secrets file: the current one first."""
    names = [source.secret_env, source.previous_secret_env]
    return [value for name in names if name and (value := secret_variable(name))]


def _json(content: Any) -> bytes:
    """JSON as Starlette's JSONResponse writes it."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None,
                      separators=(",", ":")).encode("utf-8")


async def _answer(send: Send, status: int, body: bytes,
                  headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-length", str(len(body)).encode("ascii")), _JSON, *headers]})
    await send({"type": "http.response.body", "body": body})


def match(scope: Scope) -> tuple[str, str] | None:
    """(tenant, source) when ``scope`` is a POST to the intake's path, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    if not path.startswith(PREFIX):
        return None
    tenant, _, source = path[len(PREFIX):].partition("/")
    if not tenant or not source or "/" in source:
        return None
    return tenant, source


class SourceIntake:
    """The intake's handler, an ASGI app (for Starlette's route too: the path's
    parameters are then in the scope)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.engine = state.engine
        self.clock = state.clock
        self.deadlines = Deadlines(state.clock)
        self.received = state.metrics.tally("events_received")
        self.refused = state.metrics.tally("requests_refused")
        self.ack_seconds = state.metrics.histogram("ack_seconds")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope["path_params"]
        await self.handle(scope, receive, send, params["tenant"], params["source"])

    async def handle(self, scope: Scope, receive: Receive, send: Send, tenant_key: str,
                     source_key: str) -> None:
        """Answer one request (a JSON 500, logged, for an error of its own)."""
        started = False

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._receive(scope, receive, sending, tenant_key, source_key)
        except Exception as exc:
            log.error("POST %s failed: %s", scope["path"], type(exc).__name__)
            if started:
                raise
            await _answer(send, 500, _json({"error": {
                "field": "(server)", "problem": "an internal error; it has been logged"}}))
            raise

    async def _refuse(self, send: Send, status: int, field: str, problem: str, body: bytes,
                      tenant: str | None, started: float,
                      problems: tuple[tuple[str, str], ...] = ()) -> None:
        reason = "; ".join(f"{f}: {p}" for f, p in (problems or ((field, problem),)))
        try:
            await self.engine.db(self.state.quarantine.keep, [Refused(
                raw=body, reason=f"{status} {reason}"[:2000], origin=ORIGIN, tenant=tenant)],
                now=self.clock.now())
        except Exception as exc:  # answer the sender even when the quarantine cannot keep it
            log.error("a refused request could not be quarantined (%s)", type(exc).__name__)
        self.refused.add((str(status), REASONS.get(status, "other")))
        self.ack_seconds.observe(self.clock.monotonic() - started)
        error: dict[str, Any] = {"field": field, "problem": problem}
        if len(problems) > 1:
            error["problems"] = [{"field": f, "problem": p} for f, p in problems]
        await _answer(send, status, _json({"error": error}))

    async def _receive(self, scope: Scope, receive: Receive, send: Send, tenant_key: str,
                       source_key: str) -> None:
        clock, state = self.clock, self.state
        started = clock.monotonic()
        received_at = clock.now()
        settings = state.runtime.settings.current()
        serve = settings.serve
        limit = serve.max_body_bytes
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        read = await read_body(receive, limit, self.deadlines, serve.read_timeout_seconds,
                               headers.get("content-length", ""))
        body = read.data
        tenant = settings.tenants.get(tenant_key)
        source = tenant.sources.get(source_key) if tenant is not None else None
        known = tenant_key if tenant is not None else None
        if tenant is None or source is None:
            return await self._refuse(send, 404, "(path)", "no such source for this tenant",
                                      body, known, started)
        if read.cut:
            return await self._refuse(send, 400, "(body)", "the connection closed before the "
                                      "body ended", body, known, started)
        if read.late:
            return await self._refuse(send, 408, "(body)", f"not received within "
                                      f"{serve.read_timeout_seconds:g} s", body, known, started)
        if read.too_long:
            return await self._refuse(send, 413, "(body)", f"larger than {limit} bytes", body,
                                      known, started)
        keys = secrets_of(source)
        try:
            adapter = load_adapter(source.format)
        except ConfigError as exc:
            log.error("source %s/%s: %s", tenant_key, source_key, exc)
            return await self._refuse(send, 503, "(source)", "the source's format is not "
                                      "installed on the server", body, known, started)
        if not keys:
            log.error("source %s/%s: its key is not set (%s)", tenant_key, source_key,
                      source.secret_env)
            return await self._refuse(send, 503, "(source)", "the source's key is not set on "
                                      "the server", body, known, started)
        base = (serve.public_url or state.base_url).rstrip("/")
        path = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
        query = scope.get("query_string", b"").decode("latin-1")
        incoming = SourceRequest(
            headers=headers, body=body, url=f"{base}{path}{'?' + query if query else ''}",
            received_at=received_at, source=source_key, options=source.options,
            replay_window=serve.replay_window_seconds)
        try:
            adapter.verify(incoming, keys, received_at)
            events = adapter.parse(incoming, tenant_key, tenant)
        except SourceRefused as exc:
            return await self._refuse(send, exc.status, exc.field, exc.problem, body, known,
                                      started, exc.problems)
        try:
            stored = await self.engine.ingest_many(events) if events else []
        except Exception as exc:  # the ledger failed: not acknowledged, the sender retries
            log.error("source %s/%s: events not stored (%s)", tenant_key, source_key,
                      type(exc).__name__)
            self.refused.add(("503", "not_stored"))
            return await _answer(send, 503, _json({"error": {"field": "(server)", "problem": (
                "the events could not be stored; nothing was kept: send them again later")}}),
                ((b"retry-after", b"5"),))
        answered = []
        new = False
        for event, kept in zip(events, stored, strict=True):
            self.received.add((tenant_key, source_key, event.kind, kept.status))
            answered.append({"id": event.id, "kind": event.kind, "result": kept.status})
            new = new or kept.status != "duplicate"
        if new:
            self.engine.scheduler.wake()  # new work: not left until the next known due time
        self.ack_seconds.observe(clock.monotonic() - started)
        await _answer(send, 200, _json({"received": len(stored), "events": answered}))


def routes(state: ServerState) -> list[BaseRoute]:
    intake = SourceIntake(state)
    state.extra[__name__] = intake  # the app hands it its requests first (serve.app)
    return [Route(PATH, intake, methods=["POST"], name="source_intake")]
