"""Fixtures for the Smokeball plugin's tests.

* ``served``, ``engine``: the sandbox on loopback and the host's engine pointed at it.

* ``sb``: a seeded sandbox (:data:`FIRM`), its fault injector and a fake clock that
  drives both the sandbox (write delay, token bucket) and the host's rate limiter.
* ``hook_ctx``: the plugin's hooks called as the host calls them, with the host's
  own clients (``build_client`` from the plugin's ``connection``: OAuth 2.0 through
  the sandbox's token endpoint, ``x-api-key``, the partner bucket), over the sandbox
  in process at Smokeball's real host names.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import callbridge_smokeball
import pytest
from callbridge.context import HookContext, MemoryStore
from callbridge.engine import Engine
from callbridge.faults import FaultInjector, serve_in_thread
from callbridge.http import (
    Credentials,
    MemoryTokenStore,
    RetryPolicy,
)
from callbridge.ledger import DeliveryView, Ledger
from callbridge.models import Record
from callbridge.ratelimit import LimiterRegistry
from callbridge.runtime import load
from callbridge.settings import AppSettings, TenantSettings
from callbridge.testing import MemoryCache, MemoryLocks, make_context
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


def shared(sb: Smokeball) -> dict[str, Any]:
    """The host's store and cache, which outlive an attempt and every process shares:
    pass them (``build_ctx(sb, **host)``) to each context of one test."""
    return {"store": MemoryStore(), "cache": MemoryCache(sb.clock)}


def locks() -> MemoryLocks:
    """One set of in-memory locks, to share between contexts (as the ledger's are)."""
    return MemoryLocks()


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
              lock: Callable[[str], AbstractAsyncContextManager[Any]] | None = None,
              limiters: LimiterRegistry | None = None,
              settings: AppSettings | None = None,
              cache: MemoryCache | None = None) -> HookContext:
    opts = options or SmokeballSettings()
    return make_context(
        callbridge_smokeball, settings=opts.model_dump(exclude_unset=True),
        app_settings=settings or AppSettings(plugin="smokeball"),
        tenant=TenantSettings(default_region="US", time_zone="America/New_York"),
        faults=sb.faults, clock=sb.clock, limiters=limiters or sb.limiters, retry=QUICK,
        credentials=Credentials(api_key=sb.state.api_key, client_id=sb.state.client_id,
                                client_secret=sb.state.client_secret),
        tokens=sb.tokens, delivery=delivery or Delivery(), store=store, lock=lock,
        cache=cache)


@pytest.fixture
async def hook_ctx(sb: Smokeball) -> AsyncIterator[HookContext]:
    ctx = build_ctx(sb)
    yield ctx
    await ctx.http.aclose()
    await ctx.bare_http.aclose()


# --- end to end: the engine and the sandbox on loopback ----------------------------------


@dataclass
class Served:
    state: SandboxState
    url: str
    ids: dict[str, str]


@pytest.fixture
def served() -> Iterator[Served]:
    state = SandboxState()
    ids = state.seed(FIRM)
    with serve_in_thread(create_app(state)) as url:
        state.host = url
        state.storage_host = url.replace("127.0.0.1", "localhost")
        yield Served(state, url, ids)


def write_config(path: Path, url: str, app: str = "", options: str = "") -> Path:
    path.write_text(textwrap.dedent(f"""
    [ledger]
    url = "sqlite:///{path.parent / 'ledger.db'}"
    lease_seconds = 10

    [tenants.acme]
    default_region = "US"
    time_zone = "America/New_York"
    own_numbers = ["+1 212 555 0100"]
    extensions = {{ "101" = "ann@firm.example", "102" = "bob@firm.example" }}

    [tenants.acme.apps.smokeball]
    credentials_env = "ACME_SMOKEBALL"
    {app}

    [tenants.acme.apps.smokeball.options]
    api_base_url = "{url}"
    auth_base_url = "{url}"
    {options}
    """))
    return path


@pytest.fixture
async def engine(tmp_path: Path, served: Served, monkeypatch: pytest.MonkeyPatch
                 ) -> AsyncIterator[Callable[..., Engine]]:
    monkeypatch.setenv("CALLBRIDGE_SECRET_KEY", Ledger.generate_key())
    monkeypatch.setenv("ACME_SMOKEBALL_CLIENT_ID", served.state.client_id)
    monkeypatch.setenv("ACME_SMOKEBALL_CLIENT_SECRET", served.state.client_secret)
    monkeypatch.setenv("ACME_SMOKEBALL_API_KEY", served.state.api_key)
    monkeypatch.setenv("CALLBRIDGE_PLUGINS", "smokeball")
    made: list[Engine] = []

    def make(app: str = "", options: str = "", token: bool = True) -> Engine:
        path = write_config(tmp_path / "callbridge.toml", served.url, app, options)
        built = load(path, strict=True).engine()
        if token and built.ledger.token_get("acme", "smokeball") is None:
            built.ledger.token_set("acme", "smokeball", served.state.issue_token())
        made.append(built)
        return built

    yield make
    for built in made:
        await built.aclose()


async def deliver(engine: Engine, event: Any) -> DeliveryView:
    stored = await engine.ingest(event)
    await engine.run_until_idle(event_pks=[stored.event_pk])
    view = engine.ledger.find_delivery("acme", "smokeball", stored.event_pk)
    assert view is not None
    return view


