"""Rate-limit buckets: slow down before the app answers 429.

A plugin declares its app's limits as :class:`~callbridge.capabilities.RateBucket`
values. Each bucket lives once per *scope key*:

* ``token``: per tenant and access token (``"<tenant>|<token id>"``);
* ``tenant``: per tenant;
* ``partner``: one bucket (``"*"``) shared by every tenant of the app.

A bucket is a sliding-window log that counts each request from its start
until its answer arrives (the app sees it somewhere in between; see
:class:`Ticket`): a request may start only when fewer than ``requests``
requests counted within the last ``per_seconds`` (plus a small slack for
clocks), so the number the app sees in *any* window of that length stays
within the bucket, even when a request spends a while connecting. It is an
upper bound, not an average. A ``burst`` smaller than ``requests`` also spreads
them out: at most ``burst`` requests in ``burst / requests`` of the window.

The app's rate-limit headers narrow a bucket further (:meth:`LimiterRegistry.observe`):
``X-RateLimit-Limit/Remaining/Reset`` (Clio), ``X-HubSpot-RateLimit-Max/Remaining/
Interval-Milliseconds`` (HubSpot) and ``Retry-After``.

No lock is held across a wait: a caller computes when a slot frees, sleeps,
and looks again, so one scope's queue never delays another scope. State is
per process; docs/http.md says how it will be shared by several worker
processes.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from callbridge.capabilities import RateBucket
from callbridge.errors import RateLimited

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

#: Added to every window: the app's window and ours are not aligned, and a
#: request reaches the app a little after it leaves.
DEFAULT_SLACK = 0.02


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
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
        if math.isfinite(value):
            return value
    return None


#: An answer not seen after this long no longer holds its slot (a lost release).
STALE_AFTER = 300.0


@dataclass(eq=False)
class Ticket:
    """One request counted in its buckets, from its start until its answer arrives.

    The app sees the request somewhere between the two, so the ticket counts
    at its answer time (while in flight: at the current time). Hand it back
    with :meth:`LimiterRegistry.release` when the answer (or the error) comes.
    """

    started: float
    done_at: float | None = None

    def counts_at(self, now: float) -> float:
        if self.done_at is not None:
            return self.done_at
        if now - self.started > STALE_AFTER:
            return self.started + STALE_AFTER
        return now


@dataclass
class _Window:
    """At most ``limit`` requests reach the app in any ``seconds`` (+ slack)."""

    limit: int
    seconds: float
    tickets: list[Ticket] = field(default_factory=list)

    def prune(self, now: float, slack: float) -> None:
        horizon = now - self.seconds - slack
        if len(self.tickets) >= self.limit:
            self.tickets = [t for t in self.tickets if t.counts_at(now) >= horizon]

    def free_at(self, now: float, slack: float) -> float:
        """When one more request may start (``now`` if it may start at once)."""
        if len(self.tickets) < self.limit:
            return now
        kth = heapq.nlargest(self.limit, (t.counts_at(now) for t in self.tickets))[-1]
        return max(now, kth + self.seconds + slack)

    def count_since(self, since: float, now: float) -> int:
        return sum(1 for t in self.tickets if t.counts_at(now) >= since)


@dataclass
class _BucketState:
    bucket: RateBucket
    main: _Window
    burst: _Window | None
    app_remaining: int | None = None  # what the app's headers said is left
    app_reset_at: float = 0.0
    blocked_until: float = float("-inf")  # Retry-After
    waits: int = 0
    waited: float = 0.0
    refused: int = 0

    def windows(self) -> list[_Window]:
        return [self.main] if self.burst is None else [self.main, self.burst]


class LimiterRegistry:
    """Every rate-limit bucket of the process, keyed by (plugin, bucket name, scope key).

    One registry per process, shared by every client the host builds, so all
    connections of a partner app draw from one bucket.
    """

    def __init__(self, clock: Clock = time.monotonic, *, sleep: Sleep = asyncio.sleep,
                 slack: float = DEFAULT_SLACK, wall_clock: Clock = time.time) -> None:
        self._clock = clock
        self._sleep = sleep
        self._slack = slack
        self._wall = wall_clock
        self._states: dict[tuple[str, str, str], _BucketState] = {}
        self._lock = threading.Lock()

    @staticmethod
    def scope_key(bucket: RateBucket, *, tenant: str, token_id: str) -> str:
        """The key that tells one bucket instance from another."""
        if bucket.scope == "partner":
            return "*"
        if bucket.scope == "tenant":
            return tenant
        return f"{tenant}|{token_id}"

    def _state(self, plugin: str, bucket: RateBucket, tenant: str, token_id: str) -> _BucketState:
        key = (plugin, bucket.name, self.scope_key(bucket, tenant=tenant, token_id=token_id))
        state = self._states.get(key)
        if state is None or state.bucket != bucket:
            burst = None
            if bucket.burst is not None and bucket.burst < bucket.requests:
                burst = _Window(bucket.burst, bucket.per_seconds * bucket.burst / bucket.requests)
            state = _BucketState(bucket, _Window(bucket.requests, bucket.per_seconds), burst)
            self._states[key] = state
        return state

    def _free_at(self, state: _BucketState, now: float) -> float:
        at = max(now, state.blocked_until)
        if state.app_remaining is not None and state.app_reset_at <= now:
            state.app_remaining = None  # the app's window has rolled over
        if state.app_remaining is not None and state.app_remaining <= 0:
            at = max(at, state.app_reset_at)
        for window in state.windows():
            window.prune(now, self._slack)
            at = max(at, window.free_at(now, self._slack))
        return at

    async def acquire(self, *, plugin: str, bucket: RateBucket, tenant: str, token_id: str,
                      max_wait: float | None = None) -> Ticket:
        """Wait until a request may start within ``bucket``, then count it.

        Returns the request's :class:`Ticket`; pass it to :meth:`release` when
        the answer arrives. ``max_wait``: if the wait would be longer, nothing
        is counted and :class:`~callbridge.errors.RateLimited` is raised with
        ``retry_after``, so the host can schedule the work instead of holding a
        worker.
        """
        began = self._clock()
        while True:
            with self._lock:
                now = self._clock()
                state = self._state(plugin, bucket, tenant, token_id)
                at = self._free_at(state, now)
                if at <= now:
                    ticket = Ticket(now)
                    for window in state.windows():
                        window.tickets.append(ticket)
                    if state.app_remaining is not None:
                        state.app_remaining -= 1
                    if now > began:
                        state.waits += 1
                        state.waited += now - began
                    return ticket
                if max_wait is not None and at - began > max_wait:
                    state.refused += 1
                    raise RateLimited(
                        f"rate-limit bucket '{bucket.name}' is full for {at - now:.1f}s",
                        retry_after=at - now)
            # Requests still in flight may answer late and push the time on: look again.
            await self._sleep(at - now)

    def release(self, ticket: Ticket) -> None:
        """The request's answer (or error) has arrived: it counts at this time."""
        with self._lock:
            if ticket.done_at is None:
                ticket.done_at = max(self._clock(), ticket.started)

    def observe(self, *, plugin: str, bucket: RateBucket, tenant: str, token_id: str,
                headers: Mapping[str, str]) -> None:
        """Narrow ``bucket`` from the app's answer so we slow down before a 429.

        * ``X-RateLimit-Remaining`` / ``X-HubSpot-RateLimit-Remaining``: no more
          than that many further requests until the app's window resets
          (``X-RateLimit-Reset``, a Unix time or seconds; else
          ``X-HubSpot-RateLimit-Interval-Milliseconds``; else the bucket's window).
        * ``X-RateLimit-Limit`` / ``X-HubSpot-RateLimit-Max``: a lower limit than
          declared replaces the declared one (scaled to the bucket's window).
        * ``Retry-After``: no request before then.
        """
        with self._lock:
            now = self._clock()
            state = self._state(plugin, bucket, tenant, token_id)
            interval_ms = _number(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
            app_window = interval_ms / 1000.0 if interval_ms and interval_ms > 0 else None
            window = app_window or bucket.per_seconds
            limit = _number(headers, "X-RateLimit-Limit", "X-HubSpot-RateLimit-Max")
            if limit is not None and limit >= 1:
                scaled = math.floor(limit * bucket.per_seconds / window)
                if 1 <= scaled < state.main.limit:
                    state.main.limit = scaled
            remaining = _number(headers, "X-RateLimit-Remaining", "X-HubSpot-RateLimit-Remaining")
            if remaining is not None:
                reset_in = self._reset_in(headers, window)
                state.app_remaining = max(0, int(remaining))
                state.app_reset_at = now + reset_in
            retry_after = parse_retry_after(headers.get("Retry-After"), now=self._wall())
            if retry_after is not None:
                state.blocked_until = max(state.blocked_until, now + retry_after)

    def _reset_in(self, headers: Mapping[str, str], window: float) -> float:
        reset = _number(headers, "X-RateLimit-Reset")
        if reset is None:
            return window
        # A large value is a Unix time (Clio); a small one is seconds from now.
        seconds = reset - self._wall() if reset > 1e9 else reset
        # A skewed clock must neither stall the bucket nor ignore the app.
        return min(max(seconds, 0.0), window) + self._slack

    def snapshot(self) -> dict[str, Any]:
        """The state of every bucket, for diagnostics and benchmarks."""
        with self._lock:
            now = self._clock()
            out: dict[str, Any] = {}
            for (plugin, name, scope), state in sorted(self._states.items()):
                since = now - state.main.seconds
                in_flight = sum(1 for t in state.main.tickets if t.done_at is None)
                out[f"{plugin}/{name}/{scope}"] = {
                    "scope": state.bucket.scope,
                    "purpose": state.bucket.purpose,
                    "limit": state.main.limit,
                    "per_seconds": state.main.seconds,
                    "started_in_window": state.main.count_since(since, now),
                    "in_flight": in_flight,
                    "app_remaining": state.app_remaining if state.app_reset_at > now else None,
                    "blocked_for": max(0.0, state.blocked_until - now),
                    "waits": state.waits,
                    "waited_seconds": round(state.waited, 3),
                    "refused": state.refused,
                }
            return out
