"""Fixtures for the Smokeball plugin's tests.

* ``sb``: a seeded sandbox (:data:`FIRM`), its fault injector and a fake clock that
  drives both the sandbox (write delay, token bucket) and the host's rate limiter.
* ``hook_ctx``: the plugin's hooks called as the host calls them, with the host's
  own clients (``build_client`` from the plugin's ``connection``: OAuth 2.0 through
  the sandbox's token endpoint, ``x-api-key``, the partner bucket), over the sandbox
  in process at Smokeball's real host names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import callbridge_smokeball
import httpx2
import pytest
from callbridge.context import HookContext, MemoryStore
from callbridge.faults import FaultInjector
from callbridge.http import (
    Credentials,
    MemoryTokenStore,
    RetryPolicy,
    build_bare_client,
    build_client,
)
from callbridge.models import Record
from callbridge.ratelimit import LimiterRegistry
from callbridge.settings import AppSettings, TenantSettings
from callbridge.testing.clock import FakeClock
from callbridge_smokeball import SmokeballSettings
from callbridge_smokeball.sandbox import SandboxState, create_app

QUICK = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, inline_max_wait=30.0)
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

#: The firm every hook test starts with. Numbers are stored as typed, split in
#: Smokeball's {areaCode, number}.
FIRM: dict[str, Any] = {
    "staff": {
        "ann": {"firstName": "Ann", "lastName": "Lee", "email": "ann@firm.example"},
        "bob": {"firstName": "Bob", "lastName": "Stone", "email": "bob@firm.example"},
        "cy": {"firstName": "Cy", "lastName": "Adams", "email": "cy@firm.example",
               "former": True, "enabled": False},
        "dee": {"firstName": "Dee", "lastName": "Baker", "email": "dee@firm.example",
                "enabled": False},
    },
    "contacts": {
        "dana": {"firstName": "Dana", "lastName": "Whitfield", "phone": ["212", "555-0142"],
                 "email": "dana@example.com"},
        "sam": {"firstName": "Sam", "lastName": "Ortiz", "cell": ["", "+1 646 555 0111"]},
        "lee": {"firstName": "Lee", "lastName": "Park", "phone2": ["212", "555 0150"]},
        "acme": {"company": "Acme Holdings", "phone": ["646", "555-0120"]},
        "olive": {"firstName": "Olive", "lastName": "Opposing", "phone": ["", "2125550160"]},
    },
    "matters": {
        "lease": {"title": "Lease dispute", "clients": ["dana"]},
        "old": {"title": "Old lease", "clients": ["dana"], "status": "Closed"},
        "estate": {"title": "Estate", "clients": ["sam"]},
        "trust": {"title": "Trust", "clients": ["sam"], "status": "Pending"},
        "contract": {"title": "Contract", "clients": ["lee"], "otherSides": ["olive"]},
    },
}


@dataclass
class Delivery:
    """An in-memory delivery as a host without ``ctx.delivery.step`` gives it."""

    attempt: int = 1
    first_attempt_at: datetime = START
    remembered: list[Record] = field(default_factory=list)

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self.remembered)

    async def remember(self, record: Record) -> None:
        self.remembered.append(record)

    def retry(self) -> None:
        self.attempt += 1


@dataclass
class Smokeball:
    state: SandboxState
    faults: FaultInjector
    clock: FakeClock
    ids: dict[str, str]
    tokens: MemoryTokenStore
    limiters: LimiterRegistry

    def api(self, method: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """The sandbox's log of API requests, optionally filtered (path without account)."""
        return [r for r in self.state.requests
                if (method is None or r["method"] == method)
                and (path is None or r["path"] == path)]


def locks() -> Callable[[str], AbstractAsyncContextManager[None]]:
    held: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def lock(name: str) -> AsyncIterator[None]:
        async with held.setdefault(name, asyncio.Lock()):
            yield

    return lock


def make_sandbox(fixture: dict[str, Any] | None = None) -> Smokeball:
    clock = FakeClock(START, autojump=True)
    state = SandboxState(clock=clock)
    ids = state.seed(fixture or FIRM)
    tokens = MemoryTokenStore({("acme", "smokeball"): state.issue_token()})
    # One registry for every client of a test, as one host process has.
    limiters = LimiterRegistry(clock=clock)
    return Smokeball(state, FaultInjector(create_app(state)), clock, ids, tokens, limiters)


@pytest.fixture
def sb() -> Smokeball:
    return make_sandbox()


def build_ctx(sb: Smokeball, *, options: SmokeballSettings | None = None,
              store: MemoryStore | None = None, delivery: Delivery | None = None,
              lock: Callable[[str], AbstractAsyncContextManager[None]] | None = None,
              limiters: LimiterRegistry | None = None,
              settings: AppSettings | None = None) -> HookContext:
    declaration = callbridge_smokeball.declare()
    opts = options or SmokeballSettings()
    transport = httpx2.ASGITransport(app=sb.faults)
    http = build_client(
        tenant="acme", app="smokeball", plugin="smokeball", plugin_version=declaration.version,
        connection=callbridge_smokeball.connection(opts),
        credentials=Credentials(api_key=sb.state.api_key, client_id=sb.state.client_id,
                                client_secret=sb.state.client_secret),
        buckets=declaration.rate_limits,
        limiters=limiters or sb.limiters,
        tokens=sb.tokens, retry=QUICK, transport=transport)
    bare = build_bare_client(transport=transport, retry=QUICK)
    return HookContext(
        tenant_id="acme", tenant=TenantSettings(default_region="US", time_zone="America/New_York"),
        app="smokeball", settings=settings or AppSettings(plugin="smokeball"), options=opts,
        http=http, bare_http=bare,
        log=logging.LoggerAdapter(logging.getLogger("callbridge.test.smokeball")),
        store=store or MemoryStore(), lock=lock or locks(), delivery=delivery or Delivery())


@pytest.fixture
async def hook_ctx(sb: Smokeball) -> AsyncIterator[HookContext]:
    ctx = build_ctx(sb)
    yield ctx
    await ctx.http.aclose()
    await ctx.bare_http.aclose()
