"""HubSpot's rate limits: the buckets by plan, the daily budget, the portal's midnight.

Published limits (developers.hubspot.com, "API usage guidelines and limits"):

=====================================  ================  ==========================
distribution                           burst (per 10 s)  daily (per account)
=====================================  ================  ==========================
private app, Free / Starter            100               250,000
private app, Professional              190               625,000
private app, Enterprise                190               1,000,000
API limit increase (each, max 2)       250               +1,000,000
public app (OAuth)                     110 per portal    (not reported)
=====================================  ================  ==========================

CRM search endpoints: 5 requests a second per account, apart from the above.
The daily budget resets at midnight in the portal's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from callbridge import errors
from callbridge.capabilities import RateBucket

Plan = Literal["free", "starter", "professional", "enterprise"]

BURST_WINDOW_SECONDS = 10.0
_BURST = {"free": 100, "starter": 100, "professional": 190, "enterprise": 190}
_DAILY = {"free": 250_000, "starter": 250_000, "professional": 625_000, "enterprise": 1_000_000}
OAUTH_BURST = 110
SEARCH_PER_SECOND = 5


def utcnow() -> datetime:
    return datetime.now(UTC)


def burst_limit(plan: Plan, increases: int, oauth: bool) -> int:
    if oauth:
        return OAUTH_BURST
    return 250 if increases else _BURST[plan]


def daily_budget(plan: Plan, increases: int) -> int:
    return _DAILY[plan] + 1_000_000 * increases


def buckets(plan: Plan = "starter", increases: int = 0, oauth: bool = False,
            daily_tz: str | None = None) -> tuple[RateBucket, ...]:
    """The burst bucket for the plan (per token), and the search bucket (per portal).

    The daily budget goes with the burst bucket only when the portal's time zone is
    known (``daily_tz``) and the host's buckets take one: a budget reset at the wrong
    midnight would park deliveries for hours too long or too short. Without it the
    plugin parks on HubSpot's own word (``DAILY`` 429s, ``Daily-Remaining: 0``).
    """
    burst: dict[str, Any] = {"name": "burst", "requests": burst_limit(plan, increases, oauth),
                             "per_seconds": BURST_WINDOW_SECONDS, "scope": "token"}
    if not oauth and daily_tz and "daily_reset_tz" in RateBucket.model_fields:
        burst |= {"daily": daily_budget(plan, increases), "daily_reset_tz": daily_tz}
    search = {"name": "search", "requests": SEARCH_PER_SECOND, "per_seconds": 1.0,
              "scope": "tenant", "purpose": "search"}
    return (RateBucket.model_validate(burst), RateBucket.model_validate(search))


def next_midnight(now: datetime, time_zone: str) -> datetime:
    """The next midnight in ``time_zone`` after ``now``, in UTC."""
    zone = ZoneInfo(time_zone)
    local = now.astimezone(zone)
    tomorrow = (local + timedelta(days=1)).date()
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone).astimezone(UTC)


_CoreDaily: Any = getattr(errors, "DailyLimitReached", None)


class _LocalDailyLimitReached(errors.RateLimited):
    """The portal's daily budget is spent; nothing is sent until ``resets_at``."""

    code = "daily_limit"

    def __init__(self, message: str = "daily limit reached", *, retry_after: float | None = None,
                 resets_at: datetime | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.resets_at = resets_at


#: The host's DailyLimitReached where it has one (a RateLimited either way).
DailyLimitReached: type[errors.RateLimited] = _CoreDaily or _LocalDailyLimitReached


def daily_limit(resets_at: datetime | None, now: datetime | None = None) -> errors.RateLimited:
    """The error that parks the app's deliveries until the portal's midnight."""
    wait = max(0.0, (resets_at - (now or utcnow())).total_seconds()) if resets_at else None
    message = ("HubSpot's daily API limit for this portal is spent; deliveries wait until "
               f"{resets_at.isoformat() if resets_at else 'the portal midnight'}")
    try:
        return DailyLimitReached(message, retry_after=wait, resets_at=resets_at)  # type: ignore[call-arg]
    except TypeError:  # a host class with another signature
        error = DailyLimitReached(message, retry_after=wait)
        error.resets_at = resets_at  # type: ignore[attr-defined]
        return error


@dataclass
class DailyState:
    """Whether the portal's daily budget is spent, and until when."""

    resets_at: datetime | None = None

    def parked(self, now: datetime) -> bool:
        return self.resets_at is not None and now < self.resets_at

    def exhaust(self, resets_at: datetime) -> None:
        self.resets_at = resets_at

    def dump(self) -> str:
        return self.resets_at.isoformat() if self.resets_at else ""

    @classmethod
    def load(cls, text: str | None) -> DailyState:
        return cls(datetime.fromisoformat(text) if text else None)
