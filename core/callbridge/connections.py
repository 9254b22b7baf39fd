"""One factory from settings to a hook context: :class:`Connections`.

settings → options → connection → credentials → client → context, in one
place, used by the engine, ``callbridge auth``, ``callbridge check``,
``callbridge doctor`` and the plugin kit (``callbridge.testing.make_context``):

1. **options**: the app's ``options`` validated against the plugin's settings
   model (a bad value is a :class:`~callbridge.errors.ConfigError` naming the
   field, never its value);
2. **connection**: the plugin's ``connection(options)`` hook (its API origin,
   OAuth and storage origins, auth kind, default headers, and maybe its own
   rate-limit buckets, e.g. by plan);
3. **credentials**: from the environment (``{credentials_env}_API_KEY`` etc.);
4. **client**: an :class:`~callbridge.http.AppClient` per (tenant, app), cheap
   to make: every tenant's client sends through one pool per app origin
   (:class:`~callbridge.pools.OriginPools`) and one TLS context, with the
   credentials added per request and only for the connection's own origins;
5. **context**: a :class:`~callbridge.context.HookContext` with the host's
   services: ``documents`` (the tenant's document fetcher, on one guarded
   pool), ``clock``, and what the caller gives (store, lock, cache).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2
from pydantic import BaseModel, ValidationError

from callbridge.buckets import RateBucket
from callbridge.capabilities import Connection
from callbridge.clock import SYSTEM, Clock
from callbridge.context import HookContext
from callbridge.documents import Documents
from callbridge.errors import ConfigError
from callbridge.http import (
    AppClient,
    RetryPolicy,
    _BorrowedTransport,
    build_bare_client,
    build_client,
    plain_client,
)
from callbridge.httpauth import Credentials, TokenStore
from callbridge.outbound import AddressPolicy, guarded_transport
from callbridge.plugins import LoadedPlugin, Registry
from callbridge.pools import OriginPools, PooledTransport
from callbridge.ratelimit import LimiterRegistry
from callbridge.settings import AppSettings, TenantSettings, secret

__all__ = ["Connections", "Resolved", "credentials_from_env", "validate_options"]

#: A connection for a plugin that makes no requests (no ``connection`` hook).
NO_CONNECTION = Connection(base_url="http://app.invalid")


def validate_options(plugin: LoadedPlugin, settings: AppSettings, *,
                     where: str = "") -> BaseModel | None:
    """The app's ``options`` as the plugin's settings model; errors name fields, not values."""
    model = plugin.declaration.settings_model
    if model is None:
        return None
    try:
        return model.model_validate(settings.options)
    except ValidationError as exc:
        prefix = f"{where}.options" if where else "options"
        problems = "; ".join(f"{prefix}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors(include_input=False, include_url=False))
        raise ConfigError(problems) from None


def credentials_from_env(settings: AppSettings) -> Credentials:
    """The connection's secrets from ``{credentials_env}_API_KEY/_TOKEN/_CLIENT_ID/_CLIENT_SECRET``."""
    prefix = settings.credentials_env
    return Credentials(api_key=secret(prefix, "API_KEY"), token=secret(prefix, "TOKEN"),
                       client_id=secret(prefix, "CLIENT_ID"),
                       client_secret=secret(prefix, "CLIENT_SECRET"))


@dataclass(frozen=True)
class Resolved:
    """One (tenant, app) resolved from the settings, before any client exists."""

    tenant_id: str
    tenant: TenantSettings
    app: str
    settings: AppSettings
    plugin: LoadedPlugin
    options: BaseModel | None
    connection: Connection
    credentials: Credentials

    @property
    def buckets(self) -> tuple[RateBucket, ...]:
        """The connection's own buckets, else the declaration's."""
        if self.connection.rate_limits is not None:
            return self.connection.rate_limits
        return self.plugin.declaration.rate_limits


@dataclass
class _Clients:
    settings: AppSettings
    resolved: Resolved
    http: AppClient


class Connections:
    """Builds and keeps every (tenant, app)'s client; one pool per app origin for all.

    ``transports`` maps a plugin name to an httpx2 transport (a sandbox, a
    cassette) used instead of the network. ``credentials`` reads a connection's
    secrets (the environment by default).
    """

    def __init__(self, registry: Registry, *, limiters: LimiterRegistry | None = None,
                 tokens: TokenStore | None = None,
                 transports: Mapping[str, httpx2.AsyncBaseTransport] | None = None,
                 retry: RetryPolicy | None = None, clock: Clock = SYSTEM,
                 pools: OriginPools | None = None,
                 credentials: Callable[[AppSettings], Credentials] = credentials_from_env,
                 timeout: float = 30.0) -> None:
        self.registry = registry
        self.clock = clock
        self.limiters = limiters if limiters is not None else LimiterRegistry(clock)
        self.tokens = tokens
        self.transports = dict(transports or {})
        self.retry = retry or RetryPolicy()
        self.pools = pools if pools is not None else OriginPools()
        self._credentials = credentials
        self._timeout = timeout
        self._clients: dict[tuple[str, str], _Clients] = {}
        self._plain: dict[str, httpx2.AsyncClient] = {}
        self._bare: dict[str, AppClient] = {}
        self._retired: list[tuple[float, AppClient]] = []  # (when, client): closed later
        self._used: dict[tuple[str, str], float] = {}  # (tenant, app) -> last use (monotonic)
        self._guarded: httpx2.AsyncBaseTransport | None = None
        self._documents: dict[tuple[str, frozenset[str]], Documents] = {}
        self._retired_documents: list[tuple[float, Documents]] = []

    # --- settings -> options -> connection -> credentials ---------------------------

    def plugin_for(self, tenant: TenantSettings, app: str) -> LoadedPlugin:
        settings = tenant.apps[app]
        return self.registry.get(settings.plugin or app)

    def connection(self, plugin: LoadedPlugin, options: BaseModel | None) -> Connection:
        """The plugin's ``connection(options)``, or a placeholder for a plugin without one."""
        return self.registry.connection(plugin.name, options) or NO_CONNECTION

    def resolve(self, tenant_id: str, tenant: TenantSettings, app: str) -> Resolved:
        """Settings → options → connection → credentials for one (tenant, app)."""
        try:
            settings = tenant.apps[app]
        except KeyError:
            raise ConfigError(f"tenant {tenant_id!r} has no app {app!r} in the settings") from None
        plugin = self.plugin_for(tenant, app)
        options = validate_options(plugin, settings, where=f"tenants.{tenant_id}.apps.{app}")
        return Resolved(tenant_id, tenant, app, settings, plugin, options,
                        self.connection(plugin, options), self._credentials(settings))

    # --- clients ---------------------------------------------------------------------

    def _transport(self, plugin: str) -> httpx2.AsyncBaseTransport:
        return self.transports.get(plugin) or PooledTransport(self.pools)

    def _token_client(self, plugin: str) -> httpx2.AsyncClient:
        client = self._plain.get(plugin)
        if client is None:
            client = self._plain[plugin] = plain_client(self._transport(plugin),
                                                        timeout=self._timeout)
        return client

    def build(self, resolved: Resolved) -> AppClient:
        """A new client for ``resolved`` on the shared pools (not kept: see :meth:`client`)."""
        plugin = resolved.plugin
        return build_client(
            tenant=resolved.tenant_id, app=resolved.app, plugin=plugin.name,
            plugin_version=plugin.dist_version, connection=resolved.connection,
            credentials=resolved.credentials, buckets=resolved.buckets,
            limiters=self.limiters, tokens=self.tokens, retry=self.retry,
            transport=(_BorrowedTransport(self._guarded_transport())
                       if resolved.connection.outbound and plugin.name not in self.transports
                       else self._transport(plugin.name)), timeout=self._timeout,
            token_client=(self._token_client(plugin.name)
                          if resolved.connection.auth == "oauth2" else None))

    def client(self, tenant_id: str, tenant: TenantSettings, app: str) -> tuple[Resolved, AppClient]:
        """The (tenant, app)'s kept client; made again when its settings were reloaded."""
        key = (tenant_id, app)
        kept = self._clients.get(key)
        settings = tenant.apps.get(app)
        if kept is None or kept.settings is not settings:
            resolved = self.resolve(tenant_id, tenant, app)
            if kept is not None:
                self._retired.append((self.clock.monotonic(), kept.http))
            kept = self._clients[key] = _Clients(resolved.settings, resolved, self.build(resolved))
        self._used[key] = self.clock.monotonic()
        return kept.resolved, kept.http

    # --- many tenants: what an idle or removed tenant holds is let go -----------------

    def forget(self, tenants: Collection[str]) -> list[tuple[str, str]]:
        """Let go of the clients of ``tenants`` (removed or changed); the (tenant, app)s let go."""
        return self._drop([key for key in self._clients if key[0] in tenants])

    def _drop(self, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
        now = self.clock.monotonic()
        for key in keys:
            self._retired.append((now, self._clients.pop(key).http))
            self._used.pop(key, None)
        tenants = {tenant for tenant, _ in keys}
        for doc_key in [k for k in self._documents if k[0] in tenants]:
            self._retired_documents.append((now, self._documents.pop(doc_key)))
        return keys

    async def evict_idle(self, idle_seconds: float, *, grace: float = 120.0) -> list[tuple[str, str]]:
        """Let go of the clients unused for ``idle_seconds``; close those let go more than
        ``grace`` seconds ago (a request still under way on one has ended by then). The
        shared pools stay: an evicted tenant's next delivery builds its client again."""
        now = self.clock.monotonic()
        evicted = self._drop([key for key, used in self._used.items()
                              if now - used > idle_seconds and key in self._clients])
        old, self._retired = ([c for t, c in self._retired if now - t > grace],
                              [(t, c) for t, c in self._retired if now - t <= grace])
        for client in old:
            await client.aclose()
        old_docs = [d for t, d in self._retired_documents if now - t > grace]
        self._retired_documents = [(t, d) for t, d in self._retired_documents if now - t <= grace]
        for fetcher in old_docs:
            await fetcher.aclose()
        return evicted

    def kept_count(self) -> int:
        """How many (tenant, app) clients are kept (for figures and tests)."""
        return len(self._clients)

    def bare(self, plugin: str) -> AppClient:
        """The client without credentials, base URL or default headers (pre-signed URLs)."""
        client = self._bare.get(plugin)
        if client is None:
            transport = self.transports.get(plugin)
            client = self._bare[plugin] = build_bare_client(
                transport=transport, pools=self.pools if transport is None else None,
                retry=self.retry, clock=self.clock)
        return client

    def _guarded_transport(self) -> httpx2.AsyncBaseTransport:
        """The one pool under the outbound address policy (documents, outgoing webhooks)."""
        if self._guarded is None:
            self._guarded = guarded_transport(AddressPolicy())
        return self._guarded

    def documents(self, tenant_id: str, tenant: TenantSettings) -> Documents:
        """The tenant's ``ctx.documents``: its document hosts, on one guarded pool for all."""
        key = (tenant_id, tenant.document_hosts)
        fetcher = self._documents.get(key)
        if fetcher is None:
            fetcher = self._documents[key] = Documents(
                transport=self._guarded_transport(), allowed_hosts=tenant.document_hosts)
        return fetcher

    # --- contexts --------------------------------------------------------------------

    def context(self, tenant_id: str, tenant: TenantSettings, app: str, *,
                delivery: Any = None, **services: Any) -> HookContext:
        """The hook context of one (tenant, app).

        ``services`` are the host's per-context services (``store``, ``lock``,
        ``cache``, ``documents``...); those the context does not hold are ignored.
        """
        resolved, http = self.client(tenant_id, tenant, app)
        if "documents" not in services:  # (made only when the caller gives none)
            services["documents"] = self.documents(tenant_id, tenant)
        return make_hook_context(
            tenant_id=tenant_id, tenant=tenant, app=app, settings=resolved.settings,
            options=resolved.options, http=http, bare_http=self.bare(resolved.plugin.name),
            log=logging.LoggerAdapter(
                logging.getLogger(f"callbridge.plugin.{resolved.plugin.name}"),
                {"tenant": tenant_id, "app": app}),
            delivery=delivery, clock=self.clock, **services)

    def pool_count(self) -> int:
        """How many connection pools exist (one per origin reached)."""
        return len(self.pools)

    async def aclose(self) -> None:
        clients: list[httpx2.AsyncClient] = [kept.http for kept in self._clients.values()]
        clients += [client for _, client in self._retired]
        clients += list(self._bare.values()) + list(self._plain.values())
        self._clients.clear()
        self._retired.clear()
        self._used.clear()
        for _, fetcher in self._retired_documents:
            await fetcher.aclose()
        self._retired_documents.clear()
        self._bare.clear()
        self._plain.clear()
        for client in clients:
            await client.aclose()
        for fetcher in self._documents.values():
            await fetcher.aclose()
        self._documents.clear()
        if self._guarded is not None:
            await self._guarded.aclose()
            self._guarded = None
        await self.pools.aclose()


@functools.cache
def _context_fields() -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(HookContext))


def make_hook_context(**values: Any) -> HookContext:
    """A :class:`HookContext` from the values it has fields for (others are ignored)."""
    names = _context_fields()
    return HookContext(**{k: v for k, v in values.items() if k in names})
