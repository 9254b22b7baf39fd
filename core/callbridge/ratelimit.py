"""Rate limits: slow down before the app answers 429, wait in order, never overspend.

A plugin declares its app's limits as :class:`RateBucket` values (in its
declaration, or per connection from its options: ``Connection.rate_limits``).
Each bucket lives once per *scope key*:

* ``token``: per tenant and access token (``"<tenant>|<token id>"``);
* ``tenant``: per tenant;
* ``partner``: one bucket (``"*"``) shared by every tenant of the app, each
  tenant served in turn by how little it used in the current window.

A bucket's window is a sliding-window log that counts each request from its
start until its answer arrives (see :class:`~callbridge.buckets.Ticket`), so the
number the app sees in *any* window stays within the bucket. A request takes
``cost`` units (``extensions={"callbridge_cost": n}`` overrides the bucket's).
A ``daily`` budget is spent by the same units and resets at midnight in
``daily_reset_tz``; once spent, :class:`~callbridge.errors.DailyLimitReached`
is raised at once (with ``resets_at``).

Waiters are served by :data:`priority` (a ContextVar read when the request is
made: higher first), then, in a partner bucket, the tenant that used least,
then in arrival order. A wait longer than ``max_wait`` raises
:class:`~callbridge.errors.RateLimited` with ``retry_after`` and counts nothing,
so the host parks the delivery as *waiting* instead of holding a worker.

The app's headers narrow a bucket (:meth:`LimiterRegistry.observe`):
``X-RateLimit-Limit/Remaining/Reset`` (Clio: Reset a Unix time; small values
are seconds), ``X-HubSpot-RateLimit-Max/Remaining/Interval-Milliseconds``,
``X-HubSpot-RateLimit-Daily-Remaining`` and ``Retry-After``.

All time comes from one injected :class:`callbridge.clock.Clock`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast

from callbridge.buckets import (
    BucketKey,
    BucketState,
    BucketStore,
    InProcessBucketStore,
    RateBucket,
    SharedWindows,
    Ticket,
    Waiter,
    finite,
)
from callbridge.clock import SYSTEM, Clock
from callbridge.errors import DailyLimitReached, RateLimited
from callbridge.ratelimit_shared import acquire_shared

__all__ = [
    "BucketStore",
    "InProcessBucketStore",
    "LimiterRegistry",
    "RateBucket",
    "Ticket",
    "parse_retry_after",
    "priority",
]

#: The priority of requests made in this context: higher is served first when
#: several wait for one bucket. A delivery that has begun writing sets 1, index
#: syncs -1, lookups keep the default 0.
priority: ContextVar[int] = ContextVar("callbridge.ratelimit.priority", default=0)

#: Added to every window: the app's window and ours are not aligned, and a
#: request reaches the app a little after it leaves.
DEFAULT_SLACK = 0.02
#: The furthest ahead an app's reset time is trusted (a skewed clock must not stall us).
MAX_RESET_AHEAD = 900.0


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date).

    ``now``: the Unix time an HTTP date is measured from (the injected clock's).
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        base = now if now is not None else SYSTEM.now().timestamp()
        seconds = when.timestamp() - base
    if not finite(seconds):
        return None
    return max(0.0, seconds)


def _number(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw.split(",")[0].strip())
        except ValueError:
            continue
        if finite(value):
            return value
    return None


class LimiterRegistry:
    """Every rate-limit bucket of the process, keyed by (plugin, bucket name, scope key).

    One registry per process, shared by every client the host builds, so all
    connections of a partner app draw from one bucket.
    """

    def __init__(self, clock: Clock = SYSTEM, *, store: BucketStore | None = None,
                 slack: float = DEFAULT_SLACK) -> None:
        self.clock = clock
        self.store: BucketStore = store if store is not None else InProcessBucketStore()
        #: Set when the store's windows are shared by other processes: every request
        #: is then counted there too (callbridge.sharedlimits).
        self.shared = cast(SharedWindows, store) if getattr(store, "shared", False) else None
        self._slack = slack
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._changed: dict[int, asyncio.Event] = {}
        #: Called with (plugin, bucket name, status) for each answer a bucket sees
        #: (the server's metrics count 429s); keep them quick, they must not raise.
        self.observers: list[Callable[[str, str, int], None]] = []

    @staticmethod
    def scope_key(bucket: RateBucket, *, tenant: str, token_id: str) -> str:
        """The key that tells one bucket instance from another."""
        if bucket.scope == "partner":
            return "*"
        if bucket.scope == "tenant":
            return tenant
        return f"{tenant}|{token_id}"

    def _key(self, plugin: str, bucket: RateBucket, tenant: str, token_id: str) -> BucketKey:
        return (plugin, bucket.name, self.scope_key(bucket, tenant=tenant, token_id=token_id))

    def _state(self, plugin: str, bucket: RateBucket, tenant: str, token_id: str) -> BucketState:
        return self.store.state(self._key(plugin, bucket, tenant, token_id), bucket,
                                BucketState.new)

    def _wall(self) -> float:
        return self.clock.now().timestamp()

    def _free_at(self, state: BucketState, now: float, need: int) -> float:
        at = max(now, state.blocked_until)
        if state.app_remaining is not None and state.app_reset_at <= now:
            state.app_remaining = None  # the app's window has rolled over
        if state.app_remaining is not None and state.app_remaining < need:
            at = max(at, state.app_reset_at)
        for window in state.windows():
            window.prune(now, self._slack)
            at = max(at, window.free_at(now, self._slack, need))
        return at

    def _check_daily(self, state: BucketState, cost: int) -> None:
        bucket = state.bucket
        if bucket.daily is None:
            return
        self._check_daily_reset(state)
        if state.daily_used + cost > bucket.daily:
            state.refused += 1
            resets_at = state.daily_resets_at
            assert resets_at is not None
            raise DailyLimitReached(
                f"the daily budget of rate-limit bucket '{bucket.name}' is spent until "
                f"{resets_at.isoformat(timespec='minutes')}",
                retry_after=(resets_at - self.clock.now()).total_seconds(), resets_at=resets_at)

    def _event(self, state: BucketState) -> asyncio.Event:
        event = self._changed.get(id(state))
        if event is None:
            event = self._changed[id(state)] = asyncio.Event()
        return event

    def _notify(self, state: BucketState) -> None:
        event = self._changed.pop(id(state), None)
        if event is not None:
            event.set()

    async def acquire(self, *, plugin: str, bucket: RateBucket, tenant: str, token_id: str,
                      max_wait: float | None = None, cost: int | None = None) -> Ticket:
        """Wait until a request may start within ``bucket``, then count it.

        Returns the request's :class:`Ticket`; pass it to :meth:`release` when
        the answer arrives. A wait longer than ``max_wait`` counts nothing and
        raises :class:`RateLimited` with ``retry_after``; a spent daily budget
        raises :class:`DailyLimitReached`.
        """
        units = max(1, cost if cost is not None else bucket.cost)
        me = Waiter(priority.get(), next(self._seq), tenant, units, self.clock.monotonic(),
                    max_wait)
        if self.shared is not None:  # counted where every process counts
            return await acquire_shared(self, self._key(plugin, bucket, tenant, token_id), me,
                                        bucket)
        with self._lock:
            state = self._state(plugin, bucket, tenant, token_id)
            self._check_daily(state, units)
            state.waiters.append(me)
        try:
            while True:
                with self._lock:
                    now = self.clock.monotonic()
                    state = self._state(plugin, bucket, tenant, token_id)
                    if me not in state.waiters:  # the declaration changed: a new state
                        state.waiters.append(me)
                    self._check_daily(state, units)
                    mine = state.rank(me, now)
                    ahead = [w for w in state.waiters if w is not me and state.rank(w, now) < mine]
                    at = self._free_at(state, now, units + sum(w.cost for w in ahead))
                    if at <= now and not ahead:
                        return self._take(state, me, now, units)
                    self._refuse_after(state, at, now, me.began, max_wait)
                    event = self._event(state)
                # Requests in flight may answer late and a better waiter may arrive:
                # look again when the time comes or the bucket changes.
                waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(event.wait())}
                if at > now:  # else only a better waiter is ahead: wait for it to take its turn
                    waits.add(asyncio.ensure_future(self.clock.sleep(at - now)))
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiting in waits:
                        waiting.cancel()
        finally:
            with self._lock:
                if me in state.waiters:
                    state.waiters.remove(me)
                    self._notify(state)

    def _refuse_after(self, state: BucketState, at: float, now: float, began: float,
                      max_wait: float | None) -> None:
        refusal = self._refusal(state, at, now, began, max_wait)
        if refusal is not None:
            raise refusal

    @staticmethod
    def _refusal(state: BucketState, at: float, now: float, began: float,
                 max_wait: float | None) -> RateLimited | None:
        """The error of a request that would wait past ``max_wait`` (room at ``at``)."""
        if max_wait is None or at - began <= max_wait:
            return None
        state.refused += 1
        return RateLimited(f"rate-limit bucket '{state.bucket.name}' is full for "
                           f"{at - now:.1f}s", retry_after=at - now)

    def _take(self, state: BucketState, me: Waiter, now: float, units: int) -> Ticket:
        if me in state.waiters:
            state.waiters.remove(me)
        ticket = Ticket(now, units)
        for window in state.windows():
            window.tickets.append(ticket)
        if state.app_remaining is not None:
            state.app_remaining -= units
        if state.bucket.daily is not None:
            state.daily_used += units
        if state.bucket.scope == "partner":
            state.note_use(me.tenant, now, units)
        if now > me.began:
            state.waits += 1
            state.waited += now - me.began
        self._notify(state)
        return ticket

    def release(self, ticket: Ticket) -> None:
        """The request's answer (or error) has arrived: it counts at this time."""
        with self._lock:
            self._release(ticket)

    def _release(self, ticket: Ticket) -> None:
        if ticket.done_at is None:
            ticket.done_at = max(self.clock.monotonic(), ticket.started)
            if ticket.shared and self.shared is not None:
                self.shared.done(ticket.shared, self._wall())

    def observe(self, *, plugin: str, bucket: RateBucket, tenant: str, token_id: str,
                headers: Mapping[str, str], status: int = 200) -> float | None:
        """Narrow ``bucket`` from the app's answer so we slow down before a 429.

        * ``X-RateLimit-Remaining`` / ``X-HubSpot-RateLimit-Remaining``: no more
          than that many further units until the app's window resets
          (``X-RateLimit-Reset``: a Unix time, or seconds when small; else
          ``X-HubSpot-RateLimit-Interval-Milliseconds``; else the bucket's window).
        * ``X-RateLimit-Limit`` / ``X-HubSpot-RateLimit-Max``: a lower limit than
          declared replaces the declared one (scaled to the bucket's window).
        * ``X-HubSpot-RateLimit-Daily-Remaining``: the daily budget left.
        * ``Retry-After``: no request before then. A 429 without it means what
          the bucket's ``on_429_without_retry_after`` says.

        Returns the seconds the bucket is now blocked for after a 429, if any.
        """
        with self._lock:
            now = self.clock.monotonic()
            state = self._state(plugin, bucket, tenant, token_id)
            interval_ms = _number(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
            app_window = interval_ms / 1000.0 if interval_ms and interval_ms > 0 else None
            window = app_window or bucket.window
            limit = _number(headers, "X-RateLimit-Limit", "X-HubSpot-RateLimit-Max")
            if limit is not None and limit >= 1 and state.main is not None:
                scaled = math.floor(limit * state.main.seconds / window)
                if 1 <= scaled < state.main.limit:
                    state.main.limit = scaled
            remaining = _number(headers, "X-RateLimit-Remaining", "X-HubSpot-RateLimit-Remaining")
            if remaining is not None:
                state.app_remaining = max(0, int(remaining))
                state.app_reset_at = now + self._reset_in(headers, window)
            daily_left = _number(headers, "X-HubSpot-RateLimit-Daily-Remaining")
            if daily_left is not None and bucket.daily is not None:
                self._check_daily_reset(state)
                state.daily_used = max(state.daily_used, bucket.daily - int(daily_left))
            retry_after = parse_retry_after(headers.get("Retry-After"), now=self._wall())
            if retry_after is None and status == 429 and \
                    bucket.on_429_without_retry_after == "window":
                retry_after = bucket.window
            if retry_after is not None:
                state.blocked_until = max(state.blocked_until, now + retry_after)
            self._notify(state)
        for observer in self.observers:
            observer(plugin, bucket.name, status)
        return retry_after if status == 429 else None

    def _check_daily_reset(self, state: BucketState) -> None:
        today = self.clock.now()
        if state.daily_resets_at is None or today >= state.daily_resets_at:
            state.daily_used = 0
            state.daily_resets_at = state.bucket.next_daily_reset(today)

    def _reset_in(self, headers: Mapping[str, str], window: float) -> float:
        reset = _number(headers, "X-RateLimit-Reset")
        if reset is None:
            return window + self._slack
        if reset > 1e9:  # a Unix time (Clio); whole seconds may be rounded down
            seconds = reset - self._wall() + (1.0 if reset == int(reset) else 0.0)
        else:
            seconds = reset
        # Trusted up to a bound: a skewed clock must neither stall the bucket nor ignore the app.
        return min(max(seconds, 0.0), max(window, MAX_RESET_AHEAD)) + self._slack

    def snapshot(self) -> dict[str, Any]:
        """The state of every bucket, for diagnostics and benchmarks."""
        with self._lock:
            now = self.clock.monotonic()
            out: dict[str, Any] = {}
            for (plugin, name, scope), state in self.store.items():
                main = state.main
                since = now - (main.seconds if main else 60.0)
                out[f"{plugin}/{name}/{scope}"] = {
                    "scope": state.bucket.scope,
                    "purpose": state.bucket.purpose,
                    "limit": main.limit if main else None,
                    "per_seconds": main.seconds if main else None,
                    "started_in_window": main.count_since(since, now) if main else None,
                    "in_flight": sum(1 for t in main.tickets if t.done_at is None) if main else 0,
                    "app_remaining": state.app_remaining if state.app_reset_at > now else None,
                    "blocked_for": max(0.0, state.blocked_until - now),
                    "daily_used": state.daily_used if state.bucket.daily else None,
                    "waiting": len(state.waiters),
                    "waits": state.waits,
                    "waited_seconds": round(state.waited, 3),
                    "refused": state.refused,
                }
            return out


def resets_at_of(exc: BaseException) -> datetime | None:
    """``resets_at`` of a :class:`DailyLimitReached`, else None."""
    return exc.resets_at if isinstance(exc, DailyLimitReached) else None
