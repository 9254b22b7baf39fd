"""SPEC §2.6: what an attempt's exception makes of its delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from callbridge.errors import (
    AuthenticationFailed,
    ConfigError,
    DailyLimitReached,
    NotFound,
    PermanentError,
    RateLimited,
    SkipEvent,
    TransientError,
)
from callbridge.models import OutcomeStatus
from callbridge.outcomes import outcome_for_error

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
FAR = NOW + timedelta(hours=72)


@pytest.mark.parametrize(("exc", "status", "reason"), [
    (RateLimited(retry_after=42), OutcomeStatus.WAITING, "rate_limit"),
    (DailyLimitReached(resets_at=NOW + timedelta(hours=5)), OutcomeStatus.PARKED, "daily_limit"),
    (AuthenticationFailed("401"), OutcomeStatus.PARKED, "reauthorise"),
    (ConfigError("tenants.acme.apps.crm: no such app"), OutcomeStatus.PARKED, "config_error"),
    (PermanentError("400"), OutcomeStatus.FAILED, "permanent"),
    (NotFound("gone"), OutcomeStatus.FAILED, "not_found"),
    (TransientError("503"), OutcomeStatus.WAITING, "backoff"),
    (KeyError("data"), OutcomeStatus.WAITING, "backoff"),  # a plugin's bug is not a config error
    (SkipEvent("no_matter", "No matter."), OutcomeStatus.SKIPPED, "no_matter"),
])
def test_each_kind_of_error_gets_its_state(exc: BaseException, status: OutcomeStatus,
                                           reason: str) -> None:
    outcome = outcome_for_error(exc, attempt=1, now=NOW, deadline=FAR)
    assert (outcome.status, outcome.reason) == (status, reason)


def test_a_rate_limit_waits_for_the_time_the_app_gave() -> None:
    outcome = outcome_for_error(RateLimited(retry_after=42), attempt=7, now=NOW, deadline=NOW)
    # Not a failure: even past the deadline and after many attempts it waits.
    assert outcome.next_attempt_at == NOW + timedelta(seconds=42)
    assert outcome.status == OutcomeStatus.WAITING


def test_a_daily_limit_is_parked_until_it_resets() -> None:
    resets = NOW + timedelta(hours=5)
    outcome = outcome_for_error(DailyLimitReached(resets_at=resets), attempt=1, now=NOW, deadline=FAR)
    assert outcome.next_attempt_at == resets


def test_backoff_grows_with_attempts_and_keeps_the_last_error() -> None:
    first = outcome_for_error(TransientError("boom 503"), attempt=1, now=NOW, deadline=FAR)
    later = [outcome_for_error(TransientError("x"), attempt=8, now=NOW, deadline=FAR)
             for _ in range(20)]
    assert first.next_attempt_at is not None and first.next_attempt_at <= NOW + timedelta(seconds=4)
    assert max(o.next_attempt_at for o in later if o.next_attempt_at) > NOW + timedelta(seconds=60)
    assert "TransientError: boom 503" in (first.message or "")


def test_a_transient_failure_past_the_deadline_is_dead() -> None:
    outcome = outcome_for_error(TransientError("503"), attempt=3, now=NOW,
                                deadline=NOW + timedelta(seconds=1))
    assert (outcome.status, outcome.reason) == (OutcomeStatus.DEAD, "deadline")
    assert "503" in (outcome.message or "")


def test_messages_never_carry_a_secret() -> None:
    outcome = outcome_for_error(TransientError("token=abcdef0123456789abcdef0123456789 refused"),
                                attempt=1, now=NOW, deadline=FAR)
    assert "abcdef0123456789abcdef0123456789" not in (outcome.message or "")
