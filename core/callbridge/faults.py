"""Fault injection for app sandboxes and the host's HTTP tests: one ASGI middleware.

Wrap any ASGI app (an app's sandbox, a test's small app) in :class:`FaultInjector`
and flip its attributes at run time::

    faults = FaultInjector(sandbox, seed=1)
    faults.latency = 0.05                    # seconds added before each answer
    faults.rate_limit = (5, 1.0)             # 5 requests per second, then 429
    faults.storm_until = faults.clock.monotonic() + 2  # every request 429 until then
    faults.fail_next = [503, (503, 0.2), "drop", "drop_after"]
    faults.error_rate, faults.error_statuses = 0.1, (502, 503)

``"drop"`` closes the connection before the app sees the request;
``"drop_after"`` lets the app handle it (a record is created) and then closes
the connection without an answer, so the client cannot know whether it
reached the app. Served by uvicorn the socket is aborted; under an in-process
ASGI transport the client gets ``httpx2.ReadError``.

Error answers have a generic JSON body; a sandbox gives its app's own shape with
``FaultInjector(app, bodies={401: ..., 429: ..., 503: ...})`` or by carrying a
``fault_bodies`` attribute (a mapping of status to bytes) that the injector
reads, so a plugin's error mapping is tested against what its app really says.
Time comes from ``clock`` (a :class:`callbridge.clock.Clock`), so one fake
clock can drive the host's limiter and the sandbox's rate limit together.

Rate-limit answers carry ``X-RateLimit-Limit/Remaining/Reset`` (Reset as a Unix
time, with decimals so windows under a second work) and 429s carry
``Retry-After`` in seconds (decimals when under a second).

:func:`serve_in_thread` runs an app on a loopback port for tests, the demo and
benchmarks.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import httpx2
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callbridge.clock import SYSTEM, Clock

#: A status, a status with a Retry-After (seconds), or a dropped connection.
Fault = int | tuple[int, float] | Literal["drop", "drop_after"]


def _seconds(value: float) -> str:
    """A Retry-After value: whole seconds, or decimals below one second."""
    if value >= 1:
        return str(math.ceil(value))
    return f"{max(value, 0.001):.3f}"


class FaultInjector:
    """ASGI middleware that answers with latency, 429s, 5xx and dropped connections.

    Attributes (all settable while serving):
        latency: seconds added before each answer. The app handles the request
            first, so a client that times out meanwhile leaves the work done.
        rate_limit: ``(requests, per_seconds)`` in fixed windows; beyond it 429.
        storm_until: a ``clock.monotonic()`` instant until which every request gets 429.
        storm_retry_after: the Retry-After (seconds) sent during a storm.
        fail_next: faults for the next requests, one each, in order: a status, a
            ``(status, retry_after)`` pair, ``"drop"`` or ``"drop_after"``.
        error_rate: chance of a random status from ``error_statuses`` (seeded).
        requests: ``(monotonic time of arrival, method, path, status)`` of every
            request seen; status 0 means the connection was dropped.
    """

    def __init__(self, app: ASGIApp, *, seed: int = 0, clock: Clock = SYSTEM,
                 bodies: Mapping[int, bytes] | None = None) -> None:
        self.app = app
        self.clock = clock
        supplied = bodies if bodies is not None else getattr(app, "fault_bodies", None)
        self.bodies: dict[int, bytes] = dict(supplied or {})
        self._seed = seed
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to no faults, an empty request log and the initial random seed."""
        with self._lock:
            self.latency: float = 0.0
            self.rate_limit: tuple[int, float] | None = None
            self.storm_until: float | None = None
            self.storm_retry_after: float = 1.0
            self.fail_next: list[Fault] = []
            self.fail_on: dict[tuple[str, str], list[Fault]] = {}
            self.error_rate: float = 0.0
            self.error_statuses: Sequence[int] = (500, 502, 503, 504)
            self.requests: list[tuple[float, str, str, int]] = []
            self._random = random.Random(self._seed)
            self._window_start = 0.0
            self._window_count = 0

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            await self.clock.sleep(seconds)

    def body(self, status: int, default: bytes) -> bytes:
        """The error body for ``status``: the sandbox's own, else ``default``."""
        return self.bodies.get(status, default)

    def count(self, *, method: str | None = None, path: str | None = None,
              status: int | None = None) -> int:
        """How many requests matched (every filter given must match)."""
        return sum(
            1 for _, m, p, s in list(self.requests)
            if (method is None or m == method) and (path is None or p == path)
            and (status is None or s == status))

    def _record(self, at: float, scope: Scope, status: int) -> None:
        with self._lock:
            self.requests.append((at, scope["method"], scope["path"], status))

    def _rate_headers(self, now: float, admitted: bool) -> tuple[int, list[tuple[bytes, bytes]]]:
        """Count the request in the current window; (status, headers) to add."""
        assert self.rate_limit is not None
        limit, per = self.rate_limit
        with self._lock:
            if now >= self._window_start + per:
                self._window_start = now
                self._window_count = 0
            over = self._window_count >= limit
            if not over and admitted:
                self._window_count += 1
            remaining = max(0, limit - self._window_count)
            reset_in = self._window_start + per - now
        headers = [
            (b"x-ratelimit-limit", str(limit).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-reset", f"{self.clock.now().timestamp() + reset_in:.3f}".encode()),
        ]
        if over:
            headers.append((b"retry-after", _seconds(reset_in).encode()))
            return 429, headers
        return 0, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = self.clock.monotonic()
        with self._lock:
            fault: Fault | None = self.fail_next.pop(0) if self.fail_next else None
            aimed = self.fail_on.get((scope["method"], scope["path"]))
            if fault is None and aimed:
                fault = aimed.pop(0)
            storm = self.storm_until is not None and arrived < self.storm_until
            random_error = (self.error_rate > 0 and self._random.random() < self.error_rate)
            random_status = self._random.choice(list(self.error_statuses)) if random_error else 0
        latency = self.latency
        if fault == "drop":
            self._record(arrived, scope, 0)
            await self._pause(latency)
            await _drop(send)
            return
        if storm:
            self._record(arrived, scope, 429)
            await self._pause(latency)
            await _answer(send, 429, [(b"retry-after", _seconds(self.storm_retry_after).encode())],
                          self.body(429, b'{"error": {"type": "RateLimited", "message": "slow down"}}'))
            return
        if isinstance(fault, int | tuple):
            status, retry_after = fault if isinstance(fault, tuple) else (fault, None)
            headers = ([] if retry_after is None
                       else [(b"retry-after", _seconds(retry_after).encode())])
            self._record(arrived, scope, status)
            await self._pause(latency)
            await _answer(send, status, headers, self.body(
                status, b'{"error": {"type": "Injected", "message": "injected fault"}}'))
            return
        if random_status:
            self._record(arrived, scope, random_status)
            await self._pause(latency)
            await _answer(send, random_status, [],
                          self.body(random_status, b'{"error": {"type": "Injected"}}'))
            return
        extra: list[tuple[bytes, bytes]] = []
        if self.rate_limit is not None:
            status, extra = self._rate_headers(arrived, admitted=True)
            if status:
                self._record(arrived, scope, status)
                await self._pause(latency)
                await _answer(send, status, extra, self.body(
                    429, b'{"error": {"type": "RateLimited", "message": "too many requests"}}'))
                return
        if fault == "drop_after":
            status_seen: list[int] = []

            async def swallow(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status_seen.append(int(message["status"]))

            await self.app(scope, receive, swallow)
            self._record(arrived, scope, 0)
            await self._pause(latency)
            await _drop(send)
            return
        statuses: list[int] = []

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The app has done its work; only the answer is late (a slow app).
                await self._pause(latency)
                statuses.append(int(message["status"]))
                # Logged before the answer leaves, so a client never sees an unlogged answer.
                self._record(arrived, scope, statuses[0])
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        finally:
            if not statuses:
                self._record(arrived, scope, 500)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def _drop(send: Send) -> None:
    """Close the connection without an answer."""
    # uvicorn's send is a method of the request cycle, which holds the socket's transport.
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        for _ in range(3):  # let uvicorn see the disconnect before the app returns
            await asyncio.sleep(0)
        return
    raise httpx2.ReadError("connection dropped by the fault injector")


@contextmanager
def serve_in_thread(app: ASGIApp, *, port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a background thread; yields the base URL.

    ``port=0`` picks a free port. The server stops when the block ends.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"callbridge-serve-{sock.getsockname()[1]}")
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.005)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
