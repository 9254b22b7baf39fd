"""The engine: the host's runtime for one process, made of three parts:

* :class:`~callbridge.intake.Intake` — events in, deliveries made;
* :class:`~callbridge.worker.Worker` — deliveries claimed, worked and finished;
* :class:`~callbridge.scheduler.InProcessScheduler` — when work is due (retry
  wake-ups, index syncs), on timers kept in the ledger;
* :class:`~callbridge.confirming.Confirmer` — accepted writes checked later.

It also holds what they share: settings, plugins, the ledger (reached through one
gateway), the connections and their hook contexts, the rate-limit buckets and
the clock. Many processes may share one database (see docs/ledger.md).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx2

from callbridge.appevents import AppEvents
from callbridge.buckets import BucketStore
from callbridge.capabilities import Capability
from callbridge.clock import SYSTEM, Clock
from callbridge.confirming import Confirmer
from callbridge.connections import Connections
from callbridge.context import HookContext
from callbridge.events import AnyEvent
from callbridge.facade import Facade, Hooks
from callbridge.http import RetryPolicy
from callbridge.intake import Intake
from callbridge.ledger import Ledger, LedgerStore, LedgerTokenStore, Stored
from callbridge.phoneindex import PhoneIndex
from callbridge.plugins import Registry
from callbridge.ratelimit import LimiterRegistry
from callbridge.scheduler import InProcessScheduler
from callbridge.services import Gateway, LedgerCache, LedgerDelivery, LedgerLocks
from callbridge.settings import Settings, SettingsSource, TenantSettings
from callbridge.sharedlimits import SharedBucketStore, shared_store_for
from callbridge.worker import Worker

log = logging.getLogger("callbridge.engine")
T = TypeVar("T")

#: A (tenant, app) unused this long (seconds) has its client, cache and slots let go.
IDLE_TENANT_SECONDS = 600.0


class BusyGateway:
    """The ledger's gateway (one executor), telling a test clock that real work is
    under way while each call runs (so it does not jump meanwhile)."""

    def __init__(self, inner: Any, clock: Clock = SYSTEM) -> None:
        self.inner = inner
        self._clock = clock
        self._hold = getattr(clock, "busy", None)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._hold is None:  # a real clock: nothing to tell (the usual case, kept cheap)
            result: T = await self.inner.run(fn, *args, **kwargs)
            return result
        with self._hold():
            held: T = await self.inner.run(fn, *args, **kwargs)
            return held


@contextmanager
def busy(clock: Clock) -> Iterator[None]:
    """Tell a test clock that real work is under way (it must not jump meanwhile)."""
    hold = getattr(clock, "busy", None)
    if hold is None:
        yield
        return
    with hold():
        yield


@dataclass
class Engine:
    """Feeds events through the pipeline for every connected app.

    ``transports`` maps a plugin name to an httpx2 transport (an app sandbox, a
    recording); by default the network is used. ``clock`` drives every wait and
    time stamp (the rate limiter's too), so tests inject a fake one.
    """

    settings: SettingsSource
    registry: Registry
    ledger: Ledger
    owner: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}")
    transports: Mapping[str, httpx2.AsyncBaseTransport] = field(default_factory=dict)
    concurrency: int = 32
    dry_run: bool = False
    trace: bool | None = None
    retry: RetryPolicy | None = None
    clock: Clock = SYSTEM
    #: Where rate-limit buckets live: by default shared through the ledger when it is
    #: PostgreSQL (callbridge.sharedlimits), else in this process.
    limit_store: BucketStore | None = None

    def __post_init__(self) -> None:
        self.facade = Facade(self.registry, trace=self.trace, dry_run=self.dry_run)
        self.gateway: Gateway = BusyGateway(self.ledger.gateway, self.clock)
        self.index = PhoneIndex(self.ledger, self.gateway, self.clock)
        self.limiters = LimiterRegistry(
            self.clock, store=self.limit_store or shared_store_for(self.ledger, self.clock))
        self.tokens = LedgerTokenStore(self.ledger)
        self.locks = LedgerLocks(self.gateway, self.ledger, self.clock)
        # settings -> options -> connection -> credentials -> client: one factory, one
        # pool per app origin shared by every tenant.
        self.connections = Connections(self.registry, limiters=self.limiters, tokens=self.tokens,
                                       transports=self.transports, retry=self.retry,
                                       clock=self.clock)
        self._caches: dict[tuple[str, str], LedgerCache] = {}
        self._contexts: dict[tuple[str, str], HookContext] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self.intake = Intake(self)
        self.worker = Worker(self)
        self.scheduler = InProcessScheduler(self)
        self.confirmer = Confirmer(self)
        self.app_events = AppEvents(self)

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a ledger call off the event loop."""
        return await self.gateway.run(fn, *args, **kwargs)

    def busy(self) -> Any:
        return busy(self.clock)

    # --- settings and routing -------------------------------------------------------

    @property
    def config(self) -> Settings:
        return self.settings.current()

    def apps_for(self, tenant: TenantSettings, *, automatic: bool = True) -> list[str]:
        """The tenant's apps an event is delivered to automatically."""
        out = []
        for name, app in tenant.apps.items():
            if not app.enabled or (automatic and not app.automatic_logging):
                continue
            if (app.plugin or name) not in self.registry.plugins:
                log.warning("tenant app %s uses plugin %r, which is not loaded", name, app.plugin or name)
                continue
            if _destination_only(self.registry.plugins[app.plugin or name].declaration):
                continue  # a closed-matter destination logs no event
            out.append(name)
        return sorted(out)

    def hooks_for(self, tenant: TenantSettings, app: str) -> Hooks:
        return self.facade.for_plugin(tenant.app_plugin(app))

    # --- context --------------------------------------------------------------------

    def context(self, tenant_id: str, app: str, delivery: LedgerDelivery | None = None, *,
                tenant: TenantSettings | None = None) -> HookContext:
        """The hook context for one (tenant, app), with its HTTP client (``tenant``: the
        tenant's settings, when the caller has just read them).

        Built once per (tenant, app) and copied for each delivery; built again when
        the tenant's settings or the connection's client changed (a reload, an eviction).
        """
        if tenant is None:
            tenant = self.config.tenant(tenant_id)
        key = (tenant_id, app)
        _, http = self.connections.client(tenant_id, tenant, app)  # (marks the client used)
        kept = self._contexts.get(key)
        if kept is None or kept.http is not http or kept.tenant is not tenant:
            cache = self._caches.get(key)
            if cache is None:
                cache = self._caches[key] = LedgerCache(
                    self.gateway, self.ledger, self.locks, tenant_id, app, self.clock)
            kept = self._contexts[key] = self.connections.context(
                tenant_id, tenant, app, store=LedgerStore(self.ledger, tenant_id, app),
                lock=self.locks.for_app(tenant_id, app), cache=cache)
        return kept.with_delivery(delivery)

    # --- many tenants: idle or changed tenants' state let go ------------------------------

    def forget_tenants(self, tenants: Collection[str]) -> None:
        """Let go of what this process holds for ``tenants`` (their settings changed or they
        were removed): clients, caches, worker slots. Their next delivery builds them again."""
        if not tenants:
            return
        self._let_go(self.connections.forget(tenants), tenants)

    async def evict_idle(self, idle_seconds: float = IDLE_TENANT_SECONDS) -> int:
        """Let go of the state of every (tenant, app) unused for ``idle_seconds``; how many."""
        evicted = await self.connections.evict_idle(idle_seconds)
        self._let_go(evicted, ())
        return len(evicted)

    def _let_go(self, pairs: Collection[tuple[str, str]], tenants: Collection[str]) -> None:
        gone = set(pairs)
        for key in [k for k in self._caches if k in gone or k[0] in tenants]:
            del self._caches[key]
        for key in [k for k in self._contexts if k in gone or k[0] in tenants]:
            del self._contexts[key]
        self.worker.forget(gone, tenants)

    async def aclose(self) -> None:
        await self.connections.aclose()
        self.worker.close()
        store = self.limiters.store
        if self.limit_store is None and isinstance(store, SharedBucketStore):
            await store.drain()  # the answers' times, then its own connections
            store.close()

    # --- the parts' entry points ----------------------------------------------------

    async def ingest(self, event: AnyEvent) -> Stored:
        """Store an event and create its deliveries to the tenant's automatic apps."""
        return await self.intake.store(event)

    async def ingest_many(self, events: Sequence[AnyEvent]) -> list[Stored]:
        """:meth:`ingest` for a batch: one trip to the ledger, a commit per event."""
        return await self.intake.store_many(events)

    async def process_due(self, *, limit: int = 256, event_pks: Sequence[int] | None = None,
                          tenant: str | None = None, apps: Sequence[str] | None = None) -> int:
        """Claim what is due and run it; return how many deliveries were worked."""
        return await self.worker.process_due(limit=limit, event_pks=event_pks, tenant=tenant,
                                             apps=apps)

    async def run_until_idle(self, *, event_pks: Sequence[int] | None = None,
                             tenant: str | None = None, apps: Sequence[str] | None = None) -> int:
        """Work until nothing is due now; return how many deliveries were worked."""
        return await self.worker.run_until_idle(event_pks=event_pks, tenant=tenant, apps=apps)

    async def serve(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; sync phone indexes when idle. The scheduler is the
        one ``workers.queue`` names (:func:`callbridge.workers.scheduler_for`)."""
        from callbridge.workers import scheduler_for

        self.scheduler = scheduler_for(self)
        await self.scheduler.run(stop)

    async def sync_indexes(self, *, stale_after: float = 0) -> int:
        """Catch up every phone index last synced more than ``stale_after`` seconds ago."""
        return await self.scheduler.sync_indexes(stale_after=stale_after)


def _destination_only(declaration: Any) -> bool:
    """A plugin that is a closed-matter destination and logs no kind of event."""
    caps = declaration.capabilities
    return Capability.CLOSED_MATTER_DESTINATION in caps and not caps & {
        Capability.CALLS, Capability.SMS, Capability.FAX}
