"""What an attempt's exception means for its delivery (SPEC §2.6).

* a rate limit: *waiting* (``rate_limit``) until the bucket has room; not a
  failure, the attempt count is unchanged and no retry budget is spent;
* the app's daily budget spent: *parked* (``daily_limit``) until it resets;
* the connection's credentials refused: *parked* (``reauthorise``) until
  ``callbridge auth`` connects it again;
* a setting the attempt needs is missing: *parked* (``config_error``);
* a refusal retrying cannot change: *failed*;
* anything else (a timeout, a 5xx, a bug in a plugin): *waiting* (``backoff``)
  with the last error, retried with exponential backoff until the deadline
  (the event's time + ``deadline_hours``), then *dead*.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from callbridge.clock import SYSTEM
from callbridge.errors import (
    AppError,
    AuthenticationFailed,
    ConfigError,
    DailyLimitReached,
    RateLimited,
    SkipEvent,
)
from callbridge.models import Outcome, OutcomeStatus, ParkReason, WaitReason
from callbridge.redact import describe_error

#: Waited when an app rate-limits without saying for how long.
DEFAULT_RATE_LIMIT_WAIT = 1.0


def backoff(attempt: int, *, base: float = 4.0, cap: float = 3600.0) -> float:
    """Seconds before retry ``attempt`` + 1: exponential with full jitter."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(0, attempt - 1)))


def describe(exc: BaseException) -> str:
    """One line about an error, redacted and bounded, for ``Outcome.message`` (never
    the input values a pydantic error quotes)."""
    return describe_error(exc)


def waiting(reason: WaitReason, until: datetime, message: str | None = None) -> Outcome:
    return Outcome(status=OutcomeStatus.WAITING, reason=reason.value, message=message,
                   retryable=True, next_attempt_at=until)


def parked(reason: ParkReason, message: str, until: datetime | None = None) -> Outcome:
    # Not retried on its own: released when something outside changes (ledger.unpark).
    return Outcome(status=OutcomeStatus.PARKED, reason=reason.value, message=message,
                   retryable=False, next_attempt_at=until)


def outcome_for_error(exc: BaseException, *, attempt: int, now: datetime | None = None,
                      deadline: datetime | None = None, max_attempts: int | None = None) -> Outcome:
    """The outcome of an attempt that raised ``exc`` (see the module docstring).

    ``max_attempts`` is accepted for 1.x callers and ignored: the deadline decides.
    """
    now = now or SYSTEM.now()
    message = describe(exc)
    if isinstance(exc, SkipEvent):
        return Outcome(status=OutcomeStatus.SKIPPED, reason=exc.reason, message=exc.message)
    if isinstance(exc, DailyLimitReached):
        return parked(ParkReason.DAILY_LIMIT, message, exc.resets_at)
    if isinstance(exc, RateLimited):
        wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RATE_LIMIT_WAIT
        return waiting(WaitReason.RATE_LIMIT, now + timedelta(seconds=max(wait, 0.0)), message)
    if isinstance(exc, AuthenticationFailed):
        return parked(ParkReason.REAUTHORISE,
                      message + " (re-authorise with `callbridge auth`)")
    if isinstance(exc, ConfigError):
        return parked(ParkReason.CONFIG_ERROR, message)
    if isinstance(exc, AppError) and not exc.retryable:
        return Outcome(status=OutcomeStatus.FAILED, reason=exc.code, message=message)
    due = now + timedelta(seconds=backoff(attempt))
    if deadline is not None and due > deadline:
        return Outcome(status=OutcomeStatus.DEAD, reason="deadline",
                       message=f"gave up at the deadline after {attempt} attempt(s): {message}")
    return waiting(WaitReason.BACKOFF, due, message)
