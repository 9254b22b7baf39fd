"""A clock that tests move by hand: no test sleeps for real.

``await clock.sleep(s)`` returns once the clock has been advanced past its
deadline (by :meth:`FakeClock.advance`, or automatically with ``autojump=True``
as soon as every task is waiting on the clock, which lets a whole batch run
"for ten minutes" in milliseconds).

Real work in flight (a request over loopback, a ledger call on a thread) is not
"waiting on the clock": hold :meth:`FakeClock.busy` around it (the engine's
ledger gateway does; wrap an HTTP transport in :class:`BusyTransport`) and the
clock does not jump until it is done.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx2


class FakeClock:
    """A :class:`callbridge.clock.Clock` whose time moves only when told.

    ``autojump``: when every sleeper is waiting, no real work is under way
    (:meth:`busy`) and nothing else runs for a few event-loop turns, jump to the
    earliest deadline (like trio's autojump clock).
    """

    def __init__(self, start: datetime | None = None, *, autojump: bool = False) -> None:
        self._start = start or datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
        self._elapsed = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()
        self.autojump = autojump
        self._jumper: asyncio.Task[None] | None = None
        self._busy = 0
        self._idle: asyncio.Event | None = None
        #: How far the clock jumped on its own, in total (seconds).
        self.jumped = 0.0

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return 1000.0 + self._elapsed

    def time(self) -> float:
        """Unix time of :meth:`now` (for headers such as ``X-RateLimit-Reset``)."""
        return self.now().timestamp()

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self.monotonic() + seconds, next(self._ids), fut))
        if self.autojump and (self._jumper is None or self._jumper.done()):
            self._jumper = loop.create_task(self._autojump())
        await fut

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._elapsed += max(0.0, seconds)
        self._wake()

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Real work is under way (call from the event loop's thread): no jump meanwhile."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            if self._busy == 0 and self._idle is not None:
                self._idle.set()

    def _wake(self) -> None:
        now = self.monotonic()
        while self._sleepers and self._sleepers[0][0] <= now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def _settle(self) -> None:
        """Return once no real work is under way and every runnable task has run."""
        while True:
            for _ in range(20):
                await asyncio.sleep(0)
            if self._busy == 0:
                return
            self._idle = asyncio.Event()
            await self._idle.wait()
            self._idle = None

    async def _autojump(self) -> None:
        while self._sleepers:
            # Let every runnable task run first: jump only when all are asleep.
            await self._settle()
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            heapq.heapify(self._sleepers)
            if not self._sleepers:
                return
            deadline = self._sleepers[0][0]
            if deadline > self.monotonic():
                self.jumped += deadline - self.monotonic()
                self._elapsed += deadline - self.monotonic()
            self._wake()


class BusyTransport(httpx2.AsyncBaseTransport):
    """An HTTP transport that holds ``clock.busy()`` while each request is in flight."""

    def __init__(self, inner: httpx2.AsyncBaseTransport, clock: FakeClock) -> None:
        self.inner = inner
        self.clock = clock

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        with self.clock.busy():
            response = await self.inner.handle_async_request(request)
            await response.aread()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
