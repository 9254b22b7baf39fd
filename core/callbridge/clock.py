"""Time, injected: wall time, a monotonic clock and sleeping behind one interface.

Everything in the host that reads the time or waits takes a :class:`Clock`, so
tests move time with :class:`callbridge.testing.clock.FakeClock` instead of
sleeping, and one fake clock can drive the host's rate limiter and an app
sandbox's rate limit together.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Where the host gets the time and how it waits."""

    def now(self) -> datetime:
        """The wall time, timezone-aware UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        import asyncio  # loaded by the running loop; importing the clock does not load it

        await asyncio.sleep(max(0.0, seconds))


#: The clock used wherever none is given.
SYSTEM: Clock = SystemClock()
