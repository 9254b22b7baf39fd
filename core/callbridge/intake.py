"""The intake: events in, kept in the ledger, deliveries made for the apps that log them.

Every revision of an event is stored. Deliveries are made only for a final
revision (an ended call, an SMS or fax sent or received): earlier ones (a call
ringing or in progress) are kept for when the final one arrives, and logging
modes other than automatic make their own deliveries (manual, delayed). An
ended call seen in progress waits a grace period for notes taken during it
(:mod:`callbridge.modes.notes`), which a revision may carry too.

Events stored at the same time by different callers (the server's requests) go to the
ledger together, in one call (:class:`Together`): the ledger commits the new ones of a
call together, so they share a commit; each caller still resumes only once its own
events are committed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from callbridge.events import AnyEvent
from callbridge.ledger import Stored
from callbridge.modes import notes

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.settings import Settings

#: Events this process stored lately, kept parsed for the worker.
RECENT = 10000
#: The most events one call to the ledger stores, and how many such calls run at once.
TOGETHER_MAX = 256
TOGETHER_CALLS = 2

_Item = tuple[AnyEvent, list[str], "datetime | None"]


def is_final(event: AnyEvent) -> bool:
    """Whether the event is in its final state (logs automatically)."""
    return bool(getattr(event, "is_final", True))


class Intake:
    """Stores events and creates their deliveries (one per app logging automatically)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The ledger's copy of events stored by this process, by (event, revision):
        # no need to decrypt and parse them again when their deliveries are worked.
        self.recent: OrderedDict[tuple[int, int], AnyEvent] = OrderedDict()
        self._together: Together | None = None

    def apps_for(self, event: AnyEvent, config: Settings | None = None) -> list[str]:
        """The apps an event is delivered to automatically on arrival (under ``config``,
        the settings just read, if given)."""
        if not is_final(event):
            return []
        return self.engine.apps_for((config or self.engine.config).tenant(event.tenant))

    def _keep(self, stored: Stored) -> None:
        # A stale copy that arrived late never replaces a richer one; an erased
        # event has none.
        if stored.event is None:
            return
        self.recent[(stored.event_pk, stored.revision)] = stored.event
        while len(self.recent) > RECENT:
            self.recent.popitem(last=False)

    async def store(self, event: AnyEvent) -> Stored:
        """Store one event and create its deliveries."""
        stored = await self.engine.db(self.engine.ledger.store_event, event,
                                      apps=self.apps_for(event),
                                      hold_until=notes.hold_until(self.engine, event))
        self._keep(stored)
        await notes.on_stored(self.engine, event, stored)
        return stored

    async def store_many(self, events: Sequence[AnyEvent]) -> list[Stored]:
        """:meth:`store` for a batch: stored with the batches of other callers that
        arrive meanwhile (:class:`Together`), the new events committed together."""
        config = self.engine.config  # once for the batch (a settings file is checked per read)
        items = [(e, self.apps_for(e, config), notes.hold_until(self.engine, e, config))
                 for e in events]
        stored = await self.together.store(items)
        for given, s in zip(events, stored, strict=True):
            self._keep(s)
            await notes.on_stored(self.engine, given, s)
        return stored

    @property
    def together(self) -> Together:
        together = self._together
        if together is None:
            together = self._together = Together(self.engine)
        return together

    def cached(self, event_pk: int, revision: int) -> AnyEvent | None:
        return self.recent.get((event_pk, revision))


class Together:
    """Batches of events from concurrent callers, stored in shared calls to the ledger.

    A caller's batch joins the queue; while fewer than :data:`TOGETHER_CALLS` calls
    are under way, one starts with everything queued (up to :data:`TOGETHER_MAX`
    events); what arrives meanwhile waits for the next. So under load each call
    carries the events of many requests, committed together, and alone a batch goes
    at once. A call that fails is tried again batch by batch, so a caller is told of
    a failure only when its own events could not be stored.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: list[tuple[list[_Item], asyncio.Future[list[Stored]]]] = []
        self._running = 0  # calls under way (counted from when their task is made)
        self._tasks: set[asyncio.Task[None]] = set()

    async def store(self, items: list[_Item]) -> list[Stored]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Stored]] = loop.create_future()
        self._queue.append((items, future))
        if self._running < TOGETHER_CALLS:
            self._running += 1
            task = loop.create_task(self._run())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _run(self) -> None:
        try:
            while self._queue:
                taken, size = 0, 0
                while taken < len(self._queue) and (
                        taken == 0 or size + len(self._queue[taken][0]) <= TOGETHER_MAX):
                    size += len(self._queue[taken][0])
                    taken += 1
                calls, self._queue = self._queue[:taken], self._queue[taken:]
                try:
                    await self._call(calls)
                except BaseException:  # cancelled (the loop is closing): its callers too
                    for _, future in calls:
                        future.cancel()
                    raise
        finally:
            # Counted down in the same step as the queue was found empty: a batch
            # queued after it starts a call of its own.
            self._running -= 1
            if not self._running:  # the last call stopped early (cancelled): none is left
                for _, future in self._queue:
                    future.cancel()
                self._queue.clear()

    async def _call(self, calls: list[tuple[list[_Item], asyncio.Future[list[Stored]]]]) -> None:
        items = [item for batch, _ in calls for item in batch]
        try:
            stored = await self._store(items)
        except Exception as exc:
            if len(calls) == 1:
                _settle(calls[0][1], exc)
                return
            for one in calls:  # each alone: only the batch at fault fails
                await self._call([one])
            return
        at = 0
        for batch, future in calls:
            _settle(future, stored[at:at + len(batch)])
            at += len(batch)

    async def _store(self, items: list[_Item]) -> list[Stored]:
        engine = self.engine
        return await engine.db(engine.ledger.store_events, [(e, apps) for e, apps, _ in items],
                               hold_until=[hold for _, _, hold in items])


def _settle(future: asyncio.Future[list[Stored]], outcome: list[Stored] | BaseException) -> None:
    if future.done():  # its caller was cancelled: what was stored stays
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
