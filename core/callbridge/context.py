"""The context every hook gets first: who, with what settings, and the host's services.

Plugins keep no state of their own: what must survive between calls goes in
``ctx.store`` (per tenant and app, kept in the ledger), and what a log wrote
goes in ``ctx.delivery.remember`` so a retry resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import httpx2
from pydantic import BaseModel

from callbridge.models import Record
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

    ``records`` are what earlier attempts wrote (kind, id, step). Call
    :meth:`remember` right after each record is created in the app, before the
    next step: the write is fenced, so a process whose lease expired cannot
    record (it gets :class:`~callbridge.ledger.LeaseLost` and must stop).
    """

    @property
    def records(self) -> tuple[Record, ...]: ...
    @property
    def first_attempt_at(self) -> datetime: ...
    @property
    def attempt(self) -> int: ...
    async def remember(self, record: Record) -> None: ...


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
        lock: ``async with ctx.lock("name"):`` serialises work per (tenant, app, name).
        delivery: the delivery being worked on, for log hooks; None elsewhere.
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

    def with_delivery(self, delivery: DeliveryState | None) -> HookContext:
        return HookContext(**{**self.__dict__, "delivery": delivery})


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
