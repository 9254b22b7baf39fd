"""The engine: events in, deliveries claimed from the ledger, the pipeline run
for each, outcomes recorded. asyncio, overlapping I/O across events and apps.

One :class:`Engine` per process. Many processes may share one database: a
delivery is claimed under a lease with a fencing token, renewed while the work
runs, so two processes never send it at once and a crashed process's claim
expires (see docs/ledger.md).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx2
from pydantic import BaseModel

from callbridge.capabilities import Capability, Connection
from callbridge.context import HookContext
from callbridge.events import AnyEvent
from callbridge.facade import Facade, Hooks
from callbridge.http import Credentials, RetryPolicy, build_bare_client, build_client
from callbridge.ledger import Claim, LeaseLost, Ledger, LedgerStore, LedgerTokenStore, Stored
from callbridge.models import Outcome, OutcomeStatus, Record
from callbridge.phoneindex import PhoneIndex
from callbridge.pipeline import Job, outcome_for_error, run
from callbridge.plugins import LoadedPlugin, Registry
from callbridge.ratelimit import LimiterRegistry
from callbridge.settings import AppSettings, Settings, SettingsSource, TenantSettings, secret

log = logging.getLogger("callbridge.engine")
T = TypeVar("T")


class _Delivery:
    """The ledger's delivery, as the context's ``delivery`` (fenced writes)."""

    def __init__(self, engine: Engine, claim: Claim) -> None:
        self._engine = engine
        self._ledger = engine.ledger
        self.claim = claim
        self._records = list(claim.records)

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self._records)

    @property
    def first_attempt_at(self) -> datetime:
        return self.claim.first_attempt_at

    @property
    def attempt(self) -> int:
        return self.claim.attempt

    async def remember(self, record: Record) -> None:
        await self._engine.db(self._ledger.remember, self.claim, record)
        self._records.append(record)


@dataclass
class _Connection:
    settings: AppSettings
    options: BaseModel | None
    http: httpx2.AsyncClient
    bare: httpx2.AsyncClient


@dataclass
class Engine:
    """Feeds events through the pipeline for every connected app.

    ``transports`` maps a plugin name to an httpx2 transport (an app sandbox,
    a recording); by default the network is used.
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

    def __post_init__(self) -> None:
        self.facade = Facade(self.registry, trace=self.trace, dry_run=self.dry_run)
        self.index = PhoneIndex(self.ledger)
        self.limiters = LimiterRegistry()
        self.tokens = LedgerTokenStore(self.ledger)
        self._connections: dict[tuple[str, str], _Connection] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        self._semaphore = asyncio.Semaphore(self.concurrency)
        # Ledger calls run on their own small pool: the ledger serialises writers
        # anyway, and a long SQLite wait must never block the event loop.
        self._db_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="callbridge-ledger")
        self._renew_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callbridge-lease")
        # Events this process stored recently, by (event, revision): no need to
        # decrypt and parse them again when their deliveries are worked.
        self._recent: OrderedDict[tuple[int, int], AnyEvent] = OrderedDict()

    async def db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a ledger call off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_pool, functools.partial(fn, *args, **kwargs))

    def _remember_event(self, stored: Stored) -> None:
        # The ledger's copy: a stale copy that arrived late never replaces a richer one,
        # and an erased event has none.
        if stored.event is None:
            return
        self._recent[(stored.event_pk, stored.revision)] = stored.event
        while len(self._recent) > 10000:
            self._recent.popitem(last=False)

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
            out.append(name)
        return sorted(out)

    def hooks_for(self, tenant: TenantSettings, app: str) -> Hooks:
        return self.facade.for_plugin(tenant.app_plugin(app))

    # --- context --------------------------------------------------------------------

    def _lock(self, tenant: str, app: str) -> Any:
        @asynccontextmanager
        async def lock(name: str) -> AsyncIterator[None]:
            key = (tenant, app, name)
            mutex = self._locks.get(key)
            if mutex is None:
                mutex = self._locks[key] = asyncio.Lock()
            async with mutex:
                yield
        return lock

    def context(self, tenant_id: str, app: str, delivery: _Delivery | None = None) -> HookContext:
        """The hook context for one (tenant, app), with its HTTP client."""
        tenant = self.config.tenant(tenant_id)
        settings = tenant.apps[app]
        plugin = self.hooks_for(tenant, app).plugin
        conn = self._connections.get((tenant_id, app))
        # A reload makes new settings objects: then the client is built again.
        if conn is None or conn.settings is not settings:
            if conn is not None:
                self._closing.add(asyncio.ensure_future(self._close(conn)))
            conn = self._connect(tenant_id, app, settings, plugin)
            self._connections[(tenant_id, app)] = conn
        return HookContext(
            tenant_id=tenant_id, tenant=tenant, app=app, settings=settings, options=conn.options,
            http=conn.http, bare_http=conn.bare,
            log=logging.LoggerAdapter(logging.getLogger(f"callbridge.plugin.{plugin.name}"),
                                      {"tenant": tenant_id, "app": app}),
            store=LedgerStore(self.ledger, tenant_id, app), lock=self._lock(tenant_id, app),
            delivery=delivery)

    def _connect(self, tenant_id: str, app: str, settings: AppSettings,
                 plugin: LoadedPlugin) -> _Connection:
        model = plugin.declaration.settings_model
        options = model.model_validate(settings.options) if model is not None else None
        connection = self.registry.connection(plugin.name, options) or Connection(
            base_url="http://app.invalid")  # a plugin that makes no requests
        transport = self.transports.get(plugin.name)
        prefix = settings.credentials_env
        creds = Credentials(api_key=secret(prefix, "API_KEY"), token=secret(prefix, "TOKEN"),
                            client_id=secret(prefix, "CLIENT_ID"),
                            client_secret=secret(prefix, "CLIENT_SECRET"))
        http = build_client(
            tenant=tenant_id, app=app, plugin=plugin.name, plugin_version=plugin.dist_version,
            connection=connection, credentials=creds, buckets=plugin.declaration.rate_limits,
            limiters=self.limiters, tokens=self.tokens, transport=transport,
            retry=self.retry or RetryPolicy())
        return _Connection(settings, options, http, build_bare_client(transport=transport))

    @staticmethod
    async def _close(conn: _Connection) -> None:
        await conn.http.aclose()
        await conn.bare.aclose()

    async def aclose(self) -> None:
        for conn in self._connections.values():
            await self._close(conn)
        self._connections.clear()
        if self._closing:
            await asyncio.gather(*self._closing)
        self._db_pool.shutdown(wait=False)
        self._renew_pool.shutdown(wait=False)

    # --- events in ------------------------------------------------------------------

    async def ingest(self, event: AnyEvent) -> Stored:
        """Store an event and create its deliveries to the tenant's automatic apps."""
        tenant = self.config.tenant(event.tenant)
        apps = self.apps_for(tenant)
        stored = await self.db(self.ledger.store_event, event, apps=apps)
        self._remember_event(stored)
        return stored

    async def ingest_many(self, events: Sequence[AnyEvent]) -> list[Stored]:
        """:meth:`ingest` for a batch: one trip to the ledger's thread, a commit per event."""
        batch = [(e, self.apps_for(self.config.tenant(e.tenant))) for e in events]
        stored = await self.db(self.ledger.store_events, batch)
        for s in stored:
            self._remember_event(s)
        return stored

    # --- work -----------------------------------------------------------------------

    async def process_due(self, *, limit: int = 256, event_pks: Sequence[int] | None = None,
                          tenant: str | None = None, apps: Sequence[str] | None = None) -> int:
        """Claim what is due and run it; return how many deliveries were worked."""
        lease = self.config.ledger.lease_seconds
        # Never claim more than can start at once: a lease runs from its claim.
        claims = await self.db(
            self.ledger.claim, owner=self.owner, limit=min(limit, self.concurrency),
            lease_seconds=lease,
            event_pks=event_pks, tenant=tenant, apps=apps)
        if claims:
            await asyncio.gather(*(self._work(c) for c in claims))
        return len(claims)

    async def run_until_idle(self, *, event_pks: Sequence[int] | None = None,
                             tenant: str | None = None, apps: Sequence[str] | None = None) -> int:
        """Work until nothing is due; return how many deliveries were worked.

        Keeps up to ``concurrency`` deliveries in flight, claiming more as soon as
        slots free up, so one slow app or tenant never leaves the others idle.
        """
        lease = self.config.ledger.lease_seconds
        inflight: set[asyncio.Task[None]] = set()
        total = 0
        # Claim in batches of a quarter of the slots at least: a claim is a write.
        batch = max(1, self.concurrency // 16)
        while True:
            free = self.concurrency - len(inflight)
            if free >= batch or not inflight:
                claims = await self.db(
                    self.ledger.claim, owner=self.owner, limit=free, lease_seconds=lease,
                    event_pks=event_pks, tenant=tenant, apps=apps)
                total += len(claims)
                inflight |= {asyncio.create_task(self._work(c)) for c in claims}
            if not inflight:
                return total
            done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()

    async def serve(self, stop: asyncio.Event, *, poll: float = 0.5) -> None:
        """Work until ``stop`` is set; sync phone indexes when idle."""
        while not stop.is_set():
            n = await self.run_until_idle()
            if n == 0:
                await self.sync_indexes(stale_after=300)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=poll)
                except TimeoutError:
                    pass

    async def sync_indexes(self, *, stale_after: float = 0) -> int:
        """Catch up every phone index last synced more than ``stale_after`` seconds ago."""
        seen = 0
        now = datetime.now(UTC)
        for tenant_id, tenant in self.config.tenants.items():
            for app in self.apps_for(tenant, automatic=False):
                hooks = self.hooks_for(tenant, app)
                if not hooks.supports(Capability.CONTACTS_CHANGED):
                    continue
                _, synced_at = await self.db(self.ledger.index_state, tenant_id, app)
                if synced_at is not None and (now - synced_at).total_seconds() < stale_after:
                    continue
                try:
                    seen += await self.index.sync(self.context(tenant_id, app), hooks)
                except Exception as exc:
                    log.warning("phone index sync %s/%s failed: %s", tenant_id, app, type(exc).__name__)
        return seen

    async def _work(self, claim: Claim) -> None:
        claimed = time.monotonic()
        task = asyncio.current_task()
        assert task is not None
        # The lease runs from the claim: the renewer starts before any wait for a slot.
        renewer = asyncio.create_task(self._renew(claim, task, claimed))
        try:
            async with self._semaphore:
                outcome = await self._attempt(claim, _Delivery(self, claim))
                renewer.cancel()
                await self.db(self.ledger.finish, claim, outcome)
        except LeaseLost:
            log.warning("lease lost on delivery %s; another worker owns it now", claim.delivery_id)
        except asyncio.CancelledError:
            if renewer.done() and not renewer.cancelled() and isinstance(renewer.exception(), LeaseLost):
                log.warning("lease on delivery %s could not be kept; work stopped", claim.delivery_id)
                return
            raise
        finally:
            renewer.cancel()

    async def _renew(self, claim: Claim, work: asyncio.Task[Any], claimed: float) -> None:
        """Keep the lease while the work runs; stop the work before the lease can lapse.

        Renewals run on their own thread, so a queue of ledger writes never delays
        them. If a renewal cannot be confirmed with a quarter of the lease still to
        go, the work is stopped by this process's own clock: another worker may
        claim the delivery only after the lease has lapsed, by which time anything
        this one sent has long reached the app, where the plugin's lookup finds it.
        """
        lease = self.config.ledger.lease_seconds
        valid_until = claimed + lease
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(lease / 4)
            started = time.monotonic()
            budget = valid_until - started - lease / 4
            try:
                if budget <= 0:
                    raise TimeoutError
                await asyncio.wait_for(loop.run_in_executor(
                    self._renew_pool, functools.partial(self.ledger.renew, claim, lease)), budget)
                valid_until = started + lease
            except (LeaseLost, TimeoutError):
                work.cancel()
                raise LeaseLost(f"delivery {claim.delivery_id}: lease not renewed in time") from None

    async def _attempt(self, claim: Claim, delivery: _Delivery) -> Outcome:
        try:
            event = self._recent.get((claim.event_pk, claim.revision))
            if event is None:
                event = await self.db(self.ledger.load_event, claim.event_pk)
            tenant = self.config.tenant(claim.tenant)
            if claim.app not in tenant.apps:
                return Outcome(status=OutcomeStatus.SKIPPED, reason="app_removed",
                               message="The app is no longer connected for this tenant.")
            hooks = self.hooks_for(tenant, claim.app)
            ctx = self.context(claim.tenant, claim.app, delivery)
            job = Job(event=event, hooks=hooks, ctx=ctx, chosen_contact_ids=claim.chosen_contact_ids,
                      notes=claim.notes, needs_update=claim.needs_update)
            return await run(job, self.index)
        except LeaseLost:
            raise
        except KeyError as exc:
            return Outcome(status=OutcomeStatus.FAILED, reason="not_configured", retryable=False,
                           message=f"not configured: {exc}")
        except Exception as exc:
            return outcome_for_error(exc, attempt=claim.attempt,
                                     max_attempts=self.config.ledger.max_attempts)
