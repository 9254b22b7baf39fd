"""The context every hook gets first: who, with what settings, and the host's services.

Plugins keep no state of their own: what must survive between calls goes in
``ctx.store`` (per tenant and app, kept in the ledger), and what a log wrote
goes in ``ctx.delivery.remember`` so a retry resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from callbridge.clock import SYSTEM, Clock
from callbridge.models import Record

if TYPE_CHECKING:  # the fields' types only: a plugin importing the context (most do, at
    # load) does not load the HTTP client, the settings models or the event loop
    import asyncio

    import httpx2

    from callbridge.settings import AppSettings, TenantSettings

T = TypeVar("T")


class KeyValueStore(Protocol):
    """Small strings kept by the host for one (tenant, app), encrypted at rest."""

    async def get(self, key: str) -> str | None: ...
    async def set(self, key: str, value: str) -> None: ...
    async def delete(self, key: str) -> None: ...


class MemoryStore:
    """A :class:`KeyValueStore` in memory, for tests and the contract kit."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: str) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


class DeliveryState(Protocol):
    """The delivery of one event to one app, as the ledger holds it.

    ``records`` are what earlier attempts wrote (kind, id, step). Write each
    record through :meth:`step`: a record kept by an earlier attempt is
    returned without a request; after an uncertain write (an attempt that began
    the step and never kept its result) ``find`` looks the record up by
    ``marker`` before ``create`` runs; a created record is kept at once. The
    writes are fenced, so a process whose lease expired cannot record (it gets
    :class:`~callbridge.ledger.LeaseLost` and must stop).
    """

    @property
    def records(self) -> tuple[Record, ...]: ...
    @property
    def first_attempt_at(self) -> datetime: ...
    @property
    def attempt(self) -> int: ...
    @property
    def marker(self) -> str: ...
    async def step(self, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
                   find: Callable[[], Awaitable[str | None]] | None = None) -> Record: ...
    async def remember(self, record: Record) -> None: ...


class MemoryDelivery:
    """A :class:`DeliveryState` in memory, for tests and the contract kit.

    ``records`` and ``begun`` stand for what earlier attempts left: a step in
    ``begun`` without its record is an uncertain write, so ``find`` runs first.
    """

    def __init__(self, *, records: tuple[Record, ...] = (), attempt: int = 1,
                 first_attempt_at: datetime | None = None, marker: str = "cb-test-marker",
                 begun: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.remembered: list[Record] = list(records)
        self._attempt = attempt
        self._first = first_attempt_at or SYSTEM.now()
        self._marker = marker
        self.begun: set[tuple[str, str]] = set(begun)

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self.remembered)

    @property
    def first_attempt_at(self) -> datetime:
        return self._first

    @property
    def attempt(self) -> int:
        return self._attempt

    @property
    def marker(self) -> str:
        return self._marker

    async def step(self, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
                   find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
        kept = find_record(self.records, kind, key)
        if kept is not None:
            return kept
        if find is not None and (kind, key) in self.begun:
            found = await find()
            if found is not None:
                record = Record(kind=kind, id=str(found), step=key)
                await self.remember(record)
                return record
        self.begun.add((kind, key))
        record = Record(kind=kind, id=str(await create()), step=key)
        await self.remember(record)
        return record

    async def remember(self, record: Record) -> None:
        kept = find_record(self.records, record.kind, record.step)
        if kept is not None and kept.id != record.id:
            raise ValueError(f"a second {record.kind} record for step {record.step!r}")
        if kept is None:
            self.remembered.append(record)


class Cache(Protocol):
    """JSON values the host keeps per (tenant, app) for a while (``ctx.cache``)."""

    async def get_or_load(self, key: str, loader: Callable[[], Awaitable[Any]], *,
                          ttl: float) -> Any: ...
    async def invalidate(self, key: str) -> None: ...


class MemoryCache:
    """A :class:`Cache` in memory (one process), for tests and the contract kit."""

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self.data: dict[str, tuple[Any, float]] = {}
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}

    async def get_or_load(self, key: str, loader: Callable[[], Awaitable[Any]], *,
                          ttl: float) -> Any:
        import asyncio  # loaded by the running loop already

        async with self._locks.setdefault(key, asyncio.Lock()):
            hit = self.data.get(key)
            if hit is not None and hit[1] > self._clock.monotonic():
                return hit[0]
            value = await loader()
            self.data[key] = (value, self._clock.monotonic() + ttl)
            return value

    async def invalidate(self, key: str) -> None:
        self.data.pop(key, None)


def find_record(records: tuple[Record, ...], kind: str, step: str | None = None) -> Record | None:
    """The record of ``kind`` (and ``step``) among ``records``, if any."""
    for rec in records:
        if rec.kind == kind and (step is None or rec.step == step):
            return rec
    return None


@dataclass
class SyncBridge:
    """Runs the host's async services from a sync plugin's worker thread."""

    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        import asyncio  # loaded by the loop already

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


@dataclass
class SyncHttp:
    """A blocking view of the context's async client: same pool, limits, token and retries."""

    client: httpx2.AsyncClient
    bridge: SyncBridge

    def request(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        async def go() -> httpx2.Response:
            response = await self.client.request(method, url, **kwargs)
            await response.aread()
            return response
        return self.bridge.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("PATCH", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.request("DELETE", url, **kwargs)


@dataclass
class HookContext:
    """Passed as ``ctx`` to every hook.

    Attributes:
        tenant_id: the firm's key in settings.
        tenant: the firm's settings (time zone, region, own numbers, extensions).
        app: the connected app's key in the tenant's settings.
        settings: the host's settings for this app (policies, switches).
        options: the plugin's own settings, validated against its declared model.
        http: the app's authenticated async HTTP client (base URL, auth, retries,
            rate limits, redaction). Use relative URLs.
        bare_http: a client with no auth, base URL or default headers, for
            pre-signed storage URLs.
        log: a logger; never log numbers or secrets (the host redacts, but don't rely on it).
        store: a key-value store for this (tenant, app).
        lock: ``async with ctx.lock("name") as held:`` serialises work per (tenant,
            app, name) across processes (a ledger lock, renewed while held;
            ``held.fence`` is its fencing token).
        delivery: the delivery being worked on, for log hooks; None elsewhere.
        cache: ``await ctx.cache.get_or_load(key, loader, ttl=...)``: JSON values
            kept per (tenant, app), one load at a time per key.
        documents: ``await ctx.documents.fetch(doc)``: an event's document, fetched
            by the host under its address policy.
        clock: the host's clock (wall time, monotonic time, sleeping).
        sync: for plain-function plugins: ``ctx.sync.http``, ``ctx.sync.run(coro)``.
    """

    tenant_id: str
    tenant: TenantSettings
    app: str
    settings: AppSettings
    options: BaseModel | None
    http: httpx2.AsyncClient
    bare_http: httpx2.AsyncClient
    log: logging.LoggerAdapter[logging.Logger]
    store: KeyValueStore
    lock: Callable[[str], AbstractAsyncContextManager[None]]
    delivery: DeliveryState | None = None
    sync: SyncView | None = field(default=None)
    cache: Cache | None = None  # the host always gives one; None in contexts built by hand
    documents: Any = None
    clock: Clock = SYSTEM

    def with_delivery(self, delivery: DeliveryState | None) -> HookContext:
        """This context for one delivery (a shallow copy: the services are shared)."""
        ctx = object.__new__(type(self))  # one per delivery: a copy, not __init__ again
        ctx.__dict__.update(self.__dict__)
        ctx.delivery = delivery
        return ctx


@dataclass
class SyncView:
    """What a sync plugin uses instead of awaiting: ``ctx.sync.http.get(...)``."""

    bridge: SyncBridge
    http: SyncHttp
    bare_http: SyncHttp

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await awaitable
        return self.bridge.run(wrap())
