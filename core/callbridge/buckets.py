"""Rate-limit buckets as a plugin declares them, and the state the host keeps for each.

:class:`RateBucket` is the declaration (see docs/rate-limits.md);
:class:`BucketState` is one bucket's live state for one scope key; a
:class:`BucketStore` holds those states. :class:`InProcessBucketStore` keeps them
in this process; a store shared by several worker processes implements the same
interface.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: An answer not seen after this long no longer holds its slot (a lost release).
STALE_AFTER = 300.0


class RateBucket(BaseModel):
    """A rate limit the app enforces, declared so the host slows down before a 429.

    Attributes:
        name: the bucket's name (unique within the plugin).
        requests, per_seconds: at most ``requests`` cost units in any
            ``per_seconds`` (a sliding window). Leave both out for a bucket that
            has only a ``daily`` budget.
        burst: at most ``burst`` units in ``burst / requests`` of the window.
        scope: ``token`` (one bucket per access token), ``tenant`` (per firm) or
            ``partner`` (one bucket for every tenant of the app registration; each
            tenant gets a fair share of it when several wait).
        purpose: ``default`` (every request) or a name such as ``search`` that a
            request opts into (``extensions={"callbridge_bucket": "search"}``).
        cost: units one request takes (a request may say otherwise with
            ``extensions={"callbridge_cost": n}``).
        daily: a budget of cost units per day; when it is spent the host raises
            :class:`~callbridge.errors.DailyLimitReached` until the reset.
        daily_reset_tz: the IANA time zone whose midnight resets ``daily`` (UTC if unset).
        on_429_without_retry_after: what a 429 without ``Retry-After`` means:
            ``window`` (the default): the bucket is full; no request for one
            window (``per_seconds``, or 60 s for a daily-only bucket);
            ``backoff``: retry with the client's exponential backoff.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    requests: int | None = Field(default=None, gt=0)
    per_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    burst: int | None = Field(default=None, gt=0)
    scope: Literal["token", "tenant", "partner"] = "token"
    purpose: str = "default"
    cost: int = Field(default=1, gt=0)
    daily: int | None = Field(default=None, gt=0)
    daily_reset_tz: str | None = None
    on_429_without_retry_after: Literal["window", "backoff"] = "window"

    @field_validator("daily_reset_tz")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("not a known IANA time zone") from None
        return value

    @model_validator(mode="after")
    def _has_a_limit(self) -> RateBucket:
        if (self.requests is None) != (self.per_seconds is None):
            raise ValueError("requests and per_seconds go together")
        if self.requests is None and self.daily is None:
            raise ValueError("a bucket needs requests/per_seconds, a daily budget, or both")
        return self

    @property
    def window(self) -> float:
        """The window in seconds (60 for a bucket with only a daily budget)."""
        return self.per_seconds if self.per_seconds is not None else 60.0

    def next_daily_reset(self, now: datetime) -> datetime:
        """The first midnight after ``now`` in the bucket's reset time zone (aware UTC)."""
        zone = ZoneInfo(self.daily_reset_tz or "UTC")
        local = now.astimezone(zone)
        midnight = datetime(local.year, local.month, local.day, tzinfo=zone) + timedelta(days=1)
        # Normalise across a DST change: midnight local, whatever the offset that day.
        return datetime(midnight.year, midnight.month, midnight.day, tzinfo=zone).astimezone(
            now.tzinfo)


@dataclass(eq=False)
class Ticket:
    """One request counted in a bucket, from its start until its answer arrives.

    The app sees the request somewhere between the two, so the ticket counts
    at its answer time (while in flight: at the current time).
    """

    started: float
    weight: int = 1
    done_at: float | None = None
    #: Its entry in a shared store's window (:class:`SharedWindows`), if any.
    shared: int | None = None

    def counts_at(self, now: float) -> float:
        if self.done_at is not None:
            return self.done_at
        if now - self.started > STALE_AFTER:
            return self.started + STALE_AFTER
        return now


@dataclass
class Window:
    """At most ``limit`` units reach the app in any ``seconds`` (+ slack)."""

    limit: int
    seconds: float
    tickets: list[Ticket] = field(default_factory=list)

    def prune(self, now: float, slack: float) -> None:
        horizon = now - self.seconds - slack
        self.tickets = [t for t in self.tickets if t.counts_at(now) >= horizon]

    def used(self) -> int:
        return sum(t.weight for t in self.tickets)

    def free_at(self, now: float, slack: float, need: int) -> float:
        """When ``need`` more units fit (``now`` if at once).

        A need above the limit is spread over as many windows as it takes.
        """
        extra_windows, need = divmod(need - 1, self.limit) if need > self.limit else (0, need)
        excess = self.used() + need - self.limit
        at = now
        if excess > 0:
            for ticket in sorted(self.tickets, key=lambda t: t.counts_at(now)):
                excess -= ticket.weight
                if excess <= 0:
                    at = max(now, ticket.counts_at(now) + self.seconds + slack)
                    break
        return at + extra_windows * self.seconds

    def count_since(self, since: float, now: float) -> int:
        return sum(t.weight for t in self.tickets if t.counts_at(now) >= since)


@dataclass(eq=False)
class Waiter:
    """A request waiting for room: served by priority, then fair share, then arrival."""

    priority: int
    seq: int
    tenant: str
    cost: int
    began: float = 0.0
    max_wait: float | None = None
    #: With a shared store: the future that gets its ticket (or its error).
    future: Any = None


@dataclass
class BucketState:
    """One bucket's state for one scope key."""

    bucket: RateBucket
    main: Window | None
    burst: Window | None
    app_remaining: int | None = None  # what the app's headers said is left
    app_reset_at: float = 0.0
    blocked_until: float = float("-inf")  # Retry-After, or a 429 meaning "window full"
    daily_used: int = 0
    daily_resets_at: datetime | None = None
    waiters: list[Waiter] = field(default_factory=list)
    #: Partner buckets: each tenant's (start, units) in the window, oldest first, and their sum.
    tenant_use: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    tenant_total: dict[str, int] = field(default_factory=dict)
    waits: int = 0
    waited: float = 0.0
    refused: int = 0
    #: With a shared store: the task that counts this bucket's waiters there.
    pump: Any = None
    #: The shared window said no more fit before this (monotonic) time.
    shared_until: float = float("-inf")

    @classmethod
    def new(cls, bucket: RateBucket) -> BucketState:
        main = burst = None
        if bucket.requests is not None and bucket.per_seconds is not None:
            main = Window(bucket.requests, bucket.per_seconds)
            if bucket.burst is not None and bucket.burst < bucket.requests:
                burst = Window(bucket.burst, bucket.per_seconds * bucket.burst / bucket.requests)
        return cls(bucket, main, burst)

    def windows(self) -> list[Window]:
        return [w for w in (self.main, self.burst) if w is not None]

    def tenant_used(self, tenant: str, since: float) -> int:
        """Units ``tenant`` started in this bucket since ``since`` (fair share in partner buckets).

        Ranking every waiter reads this for each: entries leave from the old end as the
        window moves and the sum is kept, so a read costs no scan of the window.
        """
        uses = self.tenant_use.get(tenant)
        if uses is None:
            return 0
        total = self.tenant_total[tenant]
        while uses and uses[0][0] < since:
            total -= uses.popleft()[1]
        if not uses:
            del self.tenant_use[tenant], self.tenant_total[tenant]
            return 0
        self.tenant_total[tenant] = total
        return total

    def note_use(self, tenant: str, now: float, units: int) -> None:
        """``tenant`` started ``units`` at ``now`` (partner buckets' fair share)."""
        self.tenant_use.setdefault(tenant, deque()).append((now, units))
        self.tenant_total[tenant] = self.tenant_total.get(tenant, 0) + units

    def rank(self, waiter: Waiter, now: float) -> tuple[int, int, int]:
        share = 0
        if self.bucket.scope == "partner":
            share = self.tenant_used(waiter.tenant, now - self.bucket.window)
        return (-waiter.priority, share, waiter.seq)


BucketKey = tuple[str, str, str]  # (plugin, bucket name, scope key)


class BucketStore(Protocol):
    """Where bucket states live. In-process now; a shared store keeps the same contract.

    ``state`` returns the state for ``key``, made by ``create`` when absent or
    when the bucket's declaration changed.
    """

    def state(self, key: BucketKey, bucket: RateBucket,
              create: Callable[[RateBucket], BucketState]) -> BucketState: ...

    def items(self) -> Iterator[tuple[BucketKey, BucketState]]: ...


class Taken(NamedTuple):
    """What a shared store counted of several requests, in their order.

    ``entries``: the ids of the requests counted (the first ones that fit; 0 for a
    bucket with only a daily budget). For the first one not counted: ``refusal``
    when the daily budget is spent, else ``wait``: seconds until it would fit.
    """

    entries: list[int]
    wait: float = 0.0
    refusal: BaseException | None = None


class SharedWindows(Protocol):
    """A store whose windows every process shares (``shared = True``;
    :class:`callbridge.sharedlimits.SharedBucketStore`).

    ``take`` counts the requests of ``units`` (in that order, each its units), as
    many as fit in every window of ``bucket`` and in its daily budget, in one go;
    it raises :class:`~callbridge.errors.RateLimited` when it cannot count at all.
    ``done`` records the answer's time (Unix) of an entry.
    """

    async def take(self, key: BucketKey, bucket: RateBucket, units: Sequence[int],
                   slack: float) -> Taken: ...

    def done(self, entry: int, at: float) -> None: ...


class InProcessBucketStore:
    """Bucket states in a dict: shared by every client of this process."""

    def __init__(self) -> None:
        self._states: dict[BucketKey, BucketState] = {}

    def state(self, key: BucketKey, bucket: RateBucket,
              create: Callable[[RateBucket], BucketState]) -> BucketState:
        state = self._states.get(key)
        if state is None or state.bucket != bucket:
            state = self._states[key] = create(bucket)
        return state

    def items(self) -> Iterator[tuple[BucketKey, BucketState]]:
        return iter(sorted(self._states.items(), key=lambda kv: kv[0]))


def finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
