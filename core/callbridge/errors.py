"""The host's exceptions.

Plugins raise the ``AppError`` subclasses from their hooks; the pipeline turns
each one into an outcome. Any other exception from a hook becomes a failed
outcome that is retried (treated like :class:`TransientError`).

Messages must never hold a token, a signed URL or a full phone number: build
them from field names and masked values (:func:`callbridge.redact.mask_number`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


class CallbridgeError(Exception):
    """Base of every error the host raises on purpose."""


class ConfigError(CallbridgeError):
    """A settings file or value is wrong. The message names the file and the key."""


@dataclass(frozen=True)
class FieldProblem:
    """One bad field of an input: where it is and what is wrong with it."""

    location: str
    problem: str

    def __str__(self) -> str:
        return f"{self.location}: {self.problem}"


class EventValidationError(CallbridgeError, ValueError):
    """An event payload is invalid. Holds every bad field, never the values."""

    def __init__(self, problems: list[FieldProblem], *, what: str = "event") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid {what}: {len(problems)} problem(s)\n{lines}")


# --- errors a plugin raises from a hook -------------------------------------------


class AppError(CallbridgeError):
    """Base of the errors a plugin raises when its app refuses or fails.

    ``retryable`` says whether trying again later can help.
    """

    retryable: bool = False
    code: str = "app_error"
    #: Set by the host's HTTP client on errors from an app's answer: its status and its
    #: JSON object (None when not JSON). Never shown in messages.
    status_code: int | None = None
    answer: dict[str, object] | None = None


class AuthenticationFailed(AppError):
    """The app rejected the credentials and a refresh did not help.

    Not retried until the connection is re-authorised (``callbridge auth``).
    """

    code = "authentication_failed"


class RateLimited(AppError):
    """The app said to slow down. ``retry_after`` is in seconds, when the app gave it."""

    retryable = True
    code = "rate_limited"

    def __init__(self, message: str = "rate limited by the app", *,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DailyLimitReached(RateLimited):
    """The app's daily budget is spent; nothing more until ``resets_at`` (aware UTC)."""

    code = "daily_limit"

    def __init__(self, message: str = "the app's daily limit is reached", *,
                 resets_at: datetime | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.resets_at = resets_at


class UnknownActivityCode(AppError):
    """A log hook was given an activity code the app no longer knows (deleted or renamed).

    The host drops its cached reference, calls ``ensure_activity_code`` again and
    retries the log once.
    """

    code = "unknown_activity_code"


class NotFound(AppError):
    """A record the hook needed does not exist in the app (e.g. a deleted contact)."""

    code = "not_found"


class TransientError(AppError):
    """A failure that may pass: a timeout, a 5xx, a dropped connection. Retried."""

    retryable = True
    code = "transient"


class PermanentError(AppError):
    """The app refused the request for good (a 4xx that retrying will not change)."""

    code = "permanent"


class AppEventRefused(CallbridgeError):
    """A request that claims to come from an app and does not (``verify_app_event``).

    ``problem`` names what is wrong ("the signature does not match", "the
    timestamp is too old"), never a value from the request. The host answers 401
    and keeps the request in the quarantine, unprocessed.
    """

    def __init__(self, problem: str, *, field: str = "signature") -> None:
        super().__init__(problem)
        self.problem = problem
        self.field = field


class HookApiDeprecationWarning(DeprecationWarning):
    """A plugin uses a part of the hook API that a coming version removes."""


class SkipEvent(CallbridgeError):
    """Raised by a log hook when the app cannot hold this event.

    The outcome becomes *skipped* with ``reason`` (a short code such as
    ``"no_matter"``) and ``message`` (one sentence for a person).
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class RetryLater(CallbridgeError):
    """Used by the host: a delivery must wait until ``not_before``."""

    not_before: datetime
    reason: str

