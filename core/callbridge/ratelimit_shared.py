"""Waiting for a rate-limit bucket whose window every worker process shares.

When a :class:`~callbridge.ratelimit.LimiterRegistry`'s store is shared
(:class:`callbridge.sharedlimits.SharedBucketStore`), each bucket instance that
has waiters in a process gets one task there, its *pump*, which counts them in
the store in their turn (priority, fair share, arrival): every waiter that fits
in the process's own window, up to :data:`SHARED_BATCH`, in one transaction.
A waiter counted gets its ticket through its own future; when the shared window
is full the pump sleeps until the store expects room (at least :func:`poll_gap`:
what frees meanwhile is taken in one go) and refuses, as ``RateLimited``, only
the waiters whose wait for that room would pass their ``max_wait``. Time spent
waiting for the database never refuses a request: only a full window does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from callbridge.buckets import BucketKey, BucketState, RateBucket, Taken, Ticket, Waiter
from callbridge.errors import RateLimited

if TYPE_CHECKING:
    from callbridge.ratelimit import LimiterRegistry

log = logging.getLogger("callbridge.ratelimit")

#: The most waiters of one bucket a shared store counts in one transaction.
SHARED_BATCH = 64
#: How long a request waits (as ``RateLimited``) when the store failed unexpectedly.
FAILED_RETRY = 5.0


def poll_gap(bucket: RateBucket) -> float:
    """The least time between two counts of a full shared bucket by one process: the
    room that frees meanwhile is taken in one go (about 1% of the window idles)."""
    return min(0.25, max(0.005, bucket.window / 50))


async def acquire_shared(registry: LimiterRegistry, key: BucketKey, me: Waiter,
                         bucket: RateBucket) -> Ticket:
    """Queue ``me`` for ``bucket``'s pump; its ticket once the store counted it."""
    me.future = asyncio.get_running_loop().create_future()
    with registry._lock:
        state = registry.store.state(key, bucket, BucketState.new)
        registry._check_daily(state, me.cost)
        state.waiters.append(me)
        if _live(state.pump):
            registry._notify(state)  # a pump waiting for room here looks again
        else:
            state.pump = asyncio.ensure_future(_pump(registry, key, state))
    try:
        ticket: Ticket = await me.future
    except BaseException:
        with registry._lock:
            if me in state.waiters:
                state.waiters.remove(me)
            future = me.future
            if future.done() and not future.cancelled() and future.exception() is None:
                registry._release(future.result())  # counted as it was cancelled: free it
        raise
    return ticket


def _live(task: Any) -> bool:
    """Whether ``task`` still runs on this event loop (not one that was closed)."""
    return task is not None and not task.done() and \
        task.get_loop() is asyncio.get_running_loop()


async def _pump(registry: LimiterRegistry, key: BucketKey, state: BucketState) -> None:
    """Count ``state``'s waiters in the shared store, batch after batch, until none is left."""
    try:
        while True:
            with registry._lock:
                now = registry.clock.monotonic()
                if not state.waiters:
                    state.pump = None
                    return
                batch = _batch(registry, state, now)
                at = now if batch else max(state.shared_until,
                                           registry._free_at(state, now, state.waiters[0].cost))
                if not batch:
                    _refuse(registry, state, list(state.waiters), at, now)
                    event = registry._event(state)
            if not batch:
                await _sleep(registry, event, at - now)
                continue
            taken = await _take(registry, key, state, batch)
            with registry._lock:
                full_until = _settle(registry, state, batch, taken)
            if full_until is not None:  # the shared window is full until then
                await registry.clock.sleep(full_until - registry.clock.monotonic())
    except BaseException as exc:
        if not isinstance(exc, asyncio.CancelledError):
            log.exception("counting requests in a shared rate-limit store failed")
        with registry._lock:
            state.pump = None
            for waiter in list(state.waiters):
                _fail(state, waiter, RateLimited(
                    "the shared rate-limit store could not count the request",
                    retry_after=FAILED_RETRY))
        if isinstance(exc, asyncio.CancelledError):
            raise


def _batch(registry: LimiterRegistry, state: BucketState, now: float) -> list[Waiter]:
    """The waiters to count now: in their turn, while they fit in this process's
    window (the first always, once its room is due: it may need more than one window)."""
    state.waiters.sort(key=lambda w: state.rank(w, now))
    if state.shared_until > now:
        return []
    first = state.waiters[0]
    if registry._free_at(state, now, first.cost) > now:
        return []
    batch, need = [first], first.cost
    room = _room(state)
    for waiter in state.waiters[1:SHARED_BATCH]:
        if need + waiter.cost > room:
            break
        batch.append(waiter)
        need += waiter.cost
    return batch


def _room(state: BucketState) -> float:
    """Units this process's window has room for now (``_free_at`` pruned it just now)."""
    rooms = [w.limit - w.used() for w in state.windows()]
    if state.app_remaining is not None:
        rooms.append(state.app_remaining)
    return min(rooms, default=float("inf"))


async def _take(registry: LimiterRegistry, key: BucketKey, state: BucketState,
                batch: list[Waiter]) -> Taken | RateLimited:
    shared = registry.shared
    assert shared is not None
    try:
        return await shared.take(key, state.bucket, [w.cost for w in batch], registry._slack)
    except RateLimited as exc:  # the store could not count them: each waits
        return exc


def _settle(registry: LimiterRegistry, state: BucketState, batch: list[Waiter],
            taken: Taken | RateLimited) -> float | None:
    """Hand each waiter counted its ticket, refuse those that cannot wait long enough;
    when the shared window is full, the time the pump should look again."""
    shared = registry.shared
    assert shared is not None
    now = registry.clock.monotonic()
    if isinstance(taken, RateLimited):
        for waiter in batch:
            _fail(state, waiter, RateLimited(str(taken), retry_after=taken.retry_after))
        return None
    for waiter, entry in zip(batch, taken.entries, strict=False):
        if waiter.future.done():  # cancelled meanwhile: it sends nothing
            if entry:
                shared.done(entry, registry._wall())
            continue
        ticket = registry._take(state, waiter, now, waiter.cost)
        ticket.shared = entry or None
        waiter.future.set_result(ticket)
    rest = batch[len(taken.entries):]
    if not rest:
        return None
    if taken.refusal is not None:  # the daily budget is spent
        state.refused += 1
        _fail(state, rest[0], taken.refusal)
        return None
    state.shared_until = now + max(taken.wait, poll_gap(state.bucket))
    _refuse(registry, state, list(state.waiters), now + taken.wait, now)
    return state.shared_until


def _refuse(registry: LimiterRegistry, state: BucketState, waiters: list[Waiter], at: float,
            now: float) -> None:
    """Refuse the waiters that would still wait at ``at`` past their ``max_wait``."""
    for waiter in waiters:
        refusal = registry._refusal(state, at, now, waiter.began, waiter.max_wait)
        if refusal is not None:
            _fail(state, waiter, refusal)


def _fail(state: BucketState, waiter: Waiter, error: BaseException) -> None:
    """``waiter`` raises ``error`` (counted in ``state.refused`` when it is a refusal)."""
    if waiter in state.waiters:
        state.waiters.remove(waiter)
    if not waiter.future.done():
        waiter.future.set_exception(error)


async def _sleep(registry: LimiterRegistry, event: asyncio.Event, seconds: float) -> None:
    """Until ``seconds`` have passed or the bucket changed (a waiter came, one left)."""
    waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(event.wait())}
    if seconds > 0:
        waits.add(asyncio.ensure_future(registry.clock.sleep(seconds)))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
