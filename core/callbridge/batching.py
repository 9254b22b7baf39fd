"""The batch work unit: due deliveries of one connection written with one ``log_batch``.

For an app that declares ``batch_writes``, each delivery still runs its own
pipeline (matching, creation, matter, user) under its own lease; at the log step
it hands its item to the :class:`Batcher` instead of calling ``log_<kind>``. The
batcher sends the items of one (tenant, app, kind) together: as soon as
``Declaration.batch_size`` are waiting, or after a short fill wait (well under a
lease); a batch of one is sent with the single ``log_<kind>`` hook. Each item's result comes back to its own delivery: ``ok`` is logged,
``error`` is that delivery's error (retried, parked or failed as usual); an
exception from the whole batch is every item's error. Written records are kept
by each item's own delivery (``item.delivery.step``), so a lost batch answer
makes the next attempt find its items by their markers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from callbridge.clock import SYSTEM, Clock
from callbridge.models import BatchItem, LogResult

if TYPE_CHECKING:
    from callbridge.pipeline import State

#: Seconds a batch waits to fill before it is sent with what it has. Long enough that
#: a backlog's deliveries, each matching and finding its matter first, meet in full
#: batches on a busy machine; far under a lease, and a lone event waits only this long.
FILL_WAIT = 0.5

_Key = tuple[str, str, str]


class Batcher:
    """Collects items per (tenant, app, kind) and sends them with ``log_batch``."""

    def __init__(self, clock: Clock = SYSTEM, *, fill_wait: float = FILL_WAIT) -> None:
        self.clock = clock
        self.fill_wait = fill_wait
        self._waiting: dict[_Key, list[tuple[State, asyncio.Future[LogResult]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Sizes of the batches sent, in order (for tests and diagnostics).
        self.sent: list[int] = []

    async def write(self, s: State) -> LogResult:
        """Log ``s``'s event as part of a batch; its own result (or its own error)."""
        key = (s.ctx.tenant_id, s.ctx.app, s.event.kind)
        future: asyncio.Future[LogResult] = asyncio.get_running_loop().create_future()
        queue = self._waiting.setdefault(key, [])
        queue.append((s, future))
        size = int(getattr(s.hooks.declaration, "batch_size", 20))
        if len(queue) >= size:
            self._flush(key)
        elif len(queue) == 1:
            self._spawn(self._later(key))
        return await future

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _later(self, key: _Key) -> None:
        await self.clock.sleep(self.fill_wait)
        self._flush(key)

    def _flush(self, key: _Key) -> None:
        items = self._waiting.pop(key, [])
        if items:
            self._spawn(self._send(items))

    async def _send(self, items: list[tuple[State, asyncio.Future[LogResult]]]) -> None:
        first = items[0][0]
        self.sent.append(len(items))
        if len(items) == 1:  # a batch of one is the single log hook
            from callbridge.pipeline import log_one

            future = items[0][1]
            try:
                future.set_result(await log_one(first))
            except Exception as exc:
                future.set_exception(exc)
            return
        batch = []
        for s, _ in items:
            assert s.ctx.delivery is not None
            batch.append(BatchItem(event=s.event, target=s.target(), delivery=s.ctx.delivery))
        kind = first.event.kind
        try:
            # The batch's context has no delivery of its own: each item carries its own.
            results = await first.hooks.log_batch(first.ctx.with_delivery(None), kind=kind,
                                                  items=batch)
        except BaseException as exc:  # the whole batch: every item's error
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(items, results, strict=True):
            if future.done():
                continue
            if result.ok is not None:
                future.set_result(result.ok)
            else:
                assert result.error is not None
                future.set_exception(result.error)
