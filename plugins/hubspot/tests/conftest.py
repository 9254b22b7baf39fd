"""Fixtures for the HubSpot plugin's tests.

* ``portal``: the sandbox's HubSpot account, seeded with owners and contacts whose
  numbers are stored as people type them, on a fake clock that jumps when every
  task waits on it (no test sleeps);
* ``hub``: the sandbox app (in the host's fault injector) over that portal;
* ``hook_ctx``: what the host hands a hook: the host's own HTTP clients over the
  sandbox in process, an in-memory store, lock and delivery, and the fake clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import callbridge_hubspot
import httpx2
import pytest
from callbridge.context import HookContext, MemoryStore
from callbridge.faults import FaultInjector
from callbridge.http import Credentials, RetryPolicy, build_bare_client, build_client
from callbridge.models import Record
from callbridge.ratelimit import LimiterRegistry
from callbridge.settings import AppSettings, TenantSettings
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


def locks() -> Callable[[str], AbstractAsyncContextManager[None]]:
    held: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def lock(name: str) -> AsyncIterator[None]:
        async with held.setdefault(name, asyncio.Lock()):
            yield

    return lock


# A context with the 2.0 services the plugin uses (a clock), on a host that may not have them.
if "clock" in {f.name for f in dataclasses.fields(HookContext)}:
    Ctx: Any = HookContext
else:
    @dataclass
    class Ctx(HookContext):  # type: ignore[no-redef]
        clock: Any = None


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
    declaration = callbridge_hubspot.declare()
    transport = httpx2.ASGITransport(app=hub)
    http = build_client(
        tenant="acme", app="hubspot", plugin="hubspot", plugin_version=declaration.version,
        connection=callbridge_hubspot.connection(options), credentials=Credentials(token=TOKEN),
        buckets=declaration.rate_limits,
        limiters=limiter_registry(clock),
        retry=retry,
        transport=transport)
    bare = build_bare_client(transport=transport, retry=retry)
    return Ctx(
        tenant_id="acme", tenant=TenantSettings(default_region="US"), app="hubspot",
        settings=settings or AppSettings(plugin="hubspot"), options=options, http=http,
        bare_http=bare, log=logging.LoggerAdapter(logging.getLogger("callbridge.test.hubspot")),
        store=MemoryStore(), lock=locks(),
        delivery=delivery if delivery is not None else Delivery(), clock=clock)


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
