"""Fixtures for the HubSpot plugin's tests.

* ``portal``: the sandbox's HubSpot account, seeded with owners and contacts whose
  numbers are stored as people type them, on a fake clock that jumps when every
  task waits on it (no test sleeps);
* ``hub``: the sandbox app (in the host's fault injector) over that portal;
* ``hook_ctx``: what the host hands a hook: the host's own HTTP clients over the
  sandbox in process, an in-memory store, lock and delivery, and the fake clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import callbridge_hubspot
import pytest
from callbridge.faults import FaultInjector
from callbridge.http import Credentials, RetryPolicy
from callbridge.models import Record
from callbridge.ratelimit import LimiterRegistry
from callbridge.settings import AppSettings, TenantSettings
from callbridge.testing import MemoryLocks, make_context
from callbridge.testing.clock import FakeClock
from callbridge_hubspot import HubSpotSettings
from callbridge_hubspot.portal import Portal
from callbridge_hubspot.sandbox import Limits, Sandbox, create_app

TOKEN = "pat-na1-test-0000"
#: Short inline retries: a test never sits through real backoff.
QUICK = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002, inline_max_wait=1.0)


@dataclass
class Delivery:
    """An in-memory delivery following the host's write protocol (``step``).

    ``retry()`` is what the host does before it calls a log hook again.
    """

    marker: str = "cb1-test-delivery"
    attempt: int = 1
    first_attempt_at: datetime = field(default_factory=lambda: FakeClock().now())
    remembered: list[Record] = field(default_factory=list)
    begun: set[tuple[str, str]] = field(default_factory=set)
    finds: int = 0

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self.remembered)

    async def remember(self, record: Record) -> None:
        if record not in self.remembered:
            self.remembered.append(record)

    async def step(self, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
                   find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
        kept = next((r for r in self.remembered if r.kind == kind and r.step == key), None)
        if kept is not None:
            return kept
        found = None
        if (kind, key) in self.begun and find is not None:
            self.finds += 1
            found = await find()
        self.begun.add((kind, key))
        record = Record(kind=kind, id=found or await create(), step=key)
        await self.remember(record)
        return record

    def retry(self) -> None:
        self.attempt += 1


def locks() -> MemoryLocks:
    """One set of in-memory locks (the host's ``ctx.lock``), to share between contexts."""
    return MemoryLocks()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(autojump=True)


@pytest.fixture
def portal(clock: FakeClock) -> Portal:
    p = Portal(clock=clock, tokens={TOKEN})
    p.add_owner("Ann", "Lee", "ann@acme.example")  # 101
    p.add_owner("Bob", "Stone", "bob@acme.example")  # 102
    p.add_contact("Dana", "Whitfield", "(212) 555-0142", email="dana@example.com",
                  modified="2026-01-02T09:00:00.000Z")  # 103
    p.add_contact("Sam", "Ortiz", "+1 646 555 0111", "646.555.0112",
                  modified="2026-01-03T09:00:00.000Z")  # 104
    p.add_contact("Lee", "Park", mobile="212-555-0150", modified="2026-01-04T09:00:00.000Z")  # 105
    p.add_contact("Jane", "Roe", "437-555-0142 (Jane's Number)",
                  modified="2026-01-04T10:00:00.000Z")  # 106
    return p


@pytest.fixture
def hub(portal: Portal) -> FaultInjector:
    app = create_app(portal, limits=Limits(burst=100, daily=250_000))
    assert isinstance(app, FaultInjector)
    return app


def sandbox_of(app: FaultInjector) -> Sandbox:
    inner: Any = app.app
    sandbox: Sandbox = inner.state.sandbox
    return sandbox


def limiter_registry(clock: FakeClock) -> LimiterRegistry:
    """The host's limiter on the test's clock."""
    return LimiterRegistry(clock)


OPTIONS = HubSpotSettings(portal_time_zone="America/New_York", search_settle_seconds=10)


def make_ctx(hub: FaultInjector, clock: FakeClock, *, options: HubSpotSettings = OPTIONS,
             delivery: Any = None, settings: AppSettings | None = None,
             retry: RetryPolicy = QUICK) -> Any:
    return make_context(
        callbridge_hubspot, settings=options.model_dump(exclude_unset=True),
        app_settings=settings or AppSettings(plugin="hubspot"),
        tenant=TenantSettings(default_region="US"), faults=hub, clock=clock,
        limiters=limiter_registry(clock), retry=retry, token=TOKEN,
        credentials=Credentials(token=TOKEN),
        delivery=delivery if delivery is not None else Delivery())


@pytest.fixture
async def hook_ctx(hub: FaultInjector, clock: FakeClock) -> AsyncIterator[Any]:
    ctx = make_ctx(hub, clock)
    yield ctx
    await ctx.http.aclose()
    await ctx.bare_http.aclose()


def api_requests(portal: Portal, method: str | None = None, path: str | None = None
                 ) -> list[dict[str, Any]]:
    return [r for r in portal.requests if (method is None or r["method"] == method)
            and (path is None or r["path"] == path)]
