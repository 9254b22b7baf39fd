"""Build a hook context by hand, for a plugin's own tests: :func:`make_context`.

The context comes from the host's own connection factory
(:class:`callbridge.connections.Connections`), so ``ctx.http`` is the very
client the engine gives a hook (base URL, credentials for the app's origins
only, rate-limit buckets, retries, error mapping), sending to the plugin's
sandbox in process. The host's per-delivery services are in memory here:

* ``ctx.delivery``: :class:`callbridge.context.MemoryDelivery` (the attempt,
  the records earlier attempts kept, the steps begun without a result,
  ``step``/``remember`` as the host runs them);
* ``ctx.store``, ``ctx.cache`` (:class:`callbridge.context.MemoryCache`),
  ``ctx.lock`` (:class:`MemoryLocks`): in memory, one context's worth;
* ``ctx.documents``: the host's fetcher, under the outbound address policy;
* ``ctx.clock``: the clock given (a FakeClock in tests).

Example, a retry that must find what the first attempt wrote::

    from callbridge.models import Record
    from callbridge.testing import make_context

    async def test_a_retry_finds_the_note_instead_of_writing_another():
        sandbox = create_app()                       # the plugin's own fake app
        ctx = make_context(myapp, settings={"region": "us"}, sandbox=sandbox,
                           attempt=2, records=[Record(kind="contact", id="c-1")])
        result = await myapp.log_call(ctx, event=call, target=target)
        assert sandbox.state.notes_written == 1
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx2
from starlette.types import ASGIApp

from callbridge import context as host
from callbridge.clock import SYSTEM, Clock
from callbridge.connections import Connections
from callbridge.context import Cache, HookContext, KeyValueStore, MemoryStore
from callbridge.documents import Documents
from callbridge.errors import ConfigError
from callbridge.faults import Fault, FaultInjector
from callbridge.http import RetryPolicy
from callbridge.httpauth import Credentials, MemoryTokenStore, TokenStore
from callbridge.models import Record
from callbridge.plugins import LoadedPlugin, Registry
from callbridge.ratelimit import LimiterRegistry
from callbridge.settings import AppSettings, TenantSettings

__all__ = ["QUICK", "TEST_TOKEN", "MemoryCache", "MemoryDelivery", "MemoryLocks", "make_context"]

T = TypeVar("T")

#: The credential every test context sends (never a real one).
TEST_TOKEN = "test-token-000000"
#: Retries as the host does them, with short waits.
QUICK = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05, inline_max_wait=5.0)


class MemoryDelivery(host.MemoryDelivery):
    """The host's in-memory delivery, with what a test looks at: ``created`` (the
    (kind, key) steps whose ``create`` ran) and a ``marker`` a test may set (to
    stand for the same delivery in a second attempt)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.created: list[tuple[str, str]] = []

    @property
    def marker(self) -> str:
        return self._marker

    @marker.setter
    def marker(self, value: str) -> None:
        self._marker = value

    async def step(self, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
                   find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
        async def counted() -> str:
            self.created.append((kind, key))
            return await create()
        return await super().step(kind, key, create=counted, find=find)


class MemoryCache(host.MemoryCache):
    """The host's in-memory cache, counting its ``loads`` (the loaders it ran)."""

    def __init__(self, clock: Clock = SYSTEM) -> None:
        super().__init__(clock)
        self.loads = 0

    async def get_or_load(self, key: str, loader: Callable[[], Awaitable[Any]], *,
                          ttl: float) -> Any:
        async def counted() -> Any:
            self.loads += 1
            return await loader()
        return await super().get_or_load(key, counted, ttl=ttl)


@dataclass
class HeldLock:
    """What ``async with ctx.lock(name) as held`` gives: its fencing token."""

    name: str
    fence: int
    #: Whether another holder had it first (as the host's ledger locks say).
    waited: bool = False


class MemoryLocks:
    """``ctx.lock`` in memory: one holder per name at a time, a new fence each time."""

    def __init__(self) -> None:
        self._held: dict[str, asyncio.Lock] = {}
        self._fence = 0

    @asynccontextmanager
    async def __call__(self, name: str) -> AsyncIterator[HeldLock]:
        lock = self._held.setdefault(name, asyncio.Lock())
        contended = lock.locked()
        async with lock:
            self._fence += 1
            yield HeldLock(name, self._fence, waited=contended)


def _register(plugin: object) -> tuple[Registry, LoadedPlugin]:
    registry = Registry()
    loaded = registry.add(plugin, distribution="(under test)")
    if not isinstance(loaded, LoadedPlugin):
        raise ConfigError(f"the plugin does not load: {loaded.reason}")
    return registry, loaded


def _own_factory(plugin: object, tenant: TenantSettings, tenant_id: str, *,
                 settings: Mapping[str, Any] | None,
                 app_settings: AppSettings | Mapping[str, Any] | None,
                 sandbox: ASGIApp | None, faults: FaultInjector | Sequence[Fault] | None,
                 clock: Clock, transport: httpx2.AsyncBaseTransport | None, token: str,
                 retry: RetryPolicy, credentials: Credentials | None,
                 tokens: TokenStore | None, limiters: LimiterRegistry | None,
                 ) -> tuple[Connections, LoadedPlugin, TenantSettings]:
    """A factory of the host's for ``plugin`` alone, sending to its sandbox (or transport)."""
    registry, loaded = _register(plugin)
    base = app_settings if isinstance(app_settings, AppSettings) else AppSettings.model_validate(
        {"plugin": loaded.name, **(app_settings or {})})
    if settings is not None:
        base = base.model_copy(update={"options": dict(settings)})
    tenant = tenant.model_copy(update={"apps": {loaded.name: base}})
    injector: FaultInjector | None = None
    if transport is None:
        if isinstance(faults, FaultInjector):
            injector = faults
        elif sandbox is not None:
            injector = FaultInjector(sandbox, clock=clock)
            injector.fail_next = list(faults or [])
        if injector is not None:
            transport = httpx2.ASGITransport(app=injector)
    if tokens is None:
        tokens = MemoryTokenStore({(tenant_id, loaded.name): {"access_token": token,
                                                             "token_type": "bearer"}})
    secrets = credentials or Credentials(api_key=token, token=token, client_id="test-client",
                                         client_secret="test-client-secret")
    factory = Connections(
        registry, tokens=tokens, clock=clock, retry=retry, limiters=limiters,
        transports={loaded.name: transport} if transport is not None else {},
        credentials=lambda _settings: secrets)
    return factory, loaded, tenant


def _loaded_in(factory: Connections, plugin: object) -> LoadedPlugin:
    for loaded in factory.registry.plugins.values():
        if loaded.obj is plugin:
            return loaded
    raise ConfigError("the plugin is not in the connection factory's registry")


def make_context(plugin: object, *, settings: Mapping[str, Any] | None = None,
                 app_settings: AppSettings | Mapping[str, Any] | None = None,
                 tenant: TenantSettings | None = None, tenant_id: str = "acme",
                 sandbox: ASGIApp | None = None,
                 faults: FaultInjector | Sequence[Fault] | None = None,
                 attempt: int = 1, records: Sequence[Record] = (),
                 uncertain: Sequence[tuple[str, str]] = (), clock: Clock | None = None,
                 transport: httpx2.AsyncBaseTransport | None = None,
                 token: str = TEST_TOKEN, retry: RetryPolicy = QUICK,
                 credentials: Credentials | None = None, tokens: TokenStore | None = None,
                 limiters: LimiterRegistry | None = None, delivery: Any = None,
                 store: KeyValueStore | None = None, lock: Any = None,
                 cache: Cache | None = None, documents: Any = None,
                 connections: Connections | None = None) -> HookContext:
    """A hook context for ``plugin``, its client sending to ``sandbox`` in process.

    Args:
        plugin: the plugin module or object (as its entry point names it).
        settings: the plugin's own options (validated by its settings model).
        app_settings: the host's settings for the app (policies); ``settings``
            wins for ``options``.
        tenant: the firm's settings (time zone, region, own numbers).
        sandbox: the app's fake ASGI app. Wrapped in a
            :class:`~callbridge.faults.FaultInjector` on the same clock.
        faults: the injector to use (its ``app`` is the sandbox), or faults for
            the next requests (``[429, "drop_after"]``).
        attempt, records, uncertain: the delivery: which attempt this is, the
            records earlier attempts kept, and the (kind, key) steps an earlier
            attempt began without recording a result (so ``find`` runs first).
        clock: the clock of the limiter, the fault injector, the cache and the
            delivery (a :class:`~callbridge.testing.clock.FakeClock` in tests).
        transport: an httpx2 transport to use instead of the sandbox (a cassette).
        token: the credential sent (an API key, a bearer or an OAuth access token).
        retry: the client's retry policy (short waits by default).
        credentials, tokens: the connection's secrets and OAuth token store, when the
            sandbox issues its own (else ``token`` stands for every secret).
        limiters: the rate limiter to share with other contexts (one per host process).
        delivery, store, lock, cache: the host's services to use instead of fresh
            in-memory ones (``delivery`` then stands for attempt/records/uncertain).
        documents: the document fetcher (else the host's, under the outbound policy).
        connections: a connection factory of the host's holding ``plugin`` to build
            from, so several contexts share its clients (the contract kit's, one per
            case). ``tenant`` then holds the app's settings as they are, the
            factory's own transport, secrets, limiter, retries and clock apply, and
            ``delivery`` is taken as given (None: a hook outside a delivery).
    """
    if connections is None:
        clock = clock or SYSTEM
        factory, loaded, tenant = _own_factory(
            plugin, tenant or TenantSettings(), tenant_id, settings=settings,
            app_settings=app_settings, sandbox=sandbox, faults=faults, clock=clock,
            transport=transport, token=token, retry=retry, credentials=credentials,
            tokens=tokens, limiters=limiters)
        if delivery is None:
            delivery = MemoryDelivery(attempt=attempt, first_attempt_at=clock.now(),
                                      records=tuple(records), begun=frozenset(uncertain))
    else:
        factory, loaded, clock = connections, _loaded_in(connections, plugin), connections.clock
        if tenant is None or loaded.name not in tenant.apps:
            raise ConfigError("with a connection factory, give the tenant holding the app")
    if documents is None:  # the host's fetcher, making its pool on first use
        documents = Documents(allowed_hosts=tenant.document_hosts)
    ctx = factory.context(tenant_id, tenant, loaded.name, delivery=delivery, documents=documents,
                          store=store if store is not None else MemoryStore(),
                          lock=lock if lock is not None else MemoryLocks(),
                          cache=cache if cache is not None else MemoryCache(clock))
    if connections is None:
        ctx.log = logging.LoggerAdapter(logging.getLogger(f"callbridge.test.{loaded.name}"),
                                        {"tenant": tenant_id, "app": loaded.name})
    return ctx
