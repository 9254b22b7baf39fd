"""Small builders shared by the host tests."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from callbridge.context import HookContext
from callbridge.facade import Facade
from callbridge.plugins import LoadedPlugin, Registry
from callbridge.settings import AppSettings, TenantSettings


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    async def get(self, key: str) -> str | None:
        return self.data.get(key)

    async def set(self, key: str, value: str) -> None:
        self.data[key] = value

    async def delete(self, key: str) -> None:
        self.data.pop(key, None)


def bare_context(app: str = "app") -> HookContext:
    @asynccontextmanager
    async def lock(name: str) -> Any:
        yield

    client = httpx2.AsyncClient(base_url="http://app.invalid")
    return HookContext(
        tenant_id="acme", tenant=TenantSettings(), app=app, settings=AppSettings(), options=None,
        http=client, bare_http=client, log=logging.LoggerAdapter(logging.getLogger("t"), {}),
        store=MemoryStore(), lock=lock)


def call_hook(plugin: object, hook: str, **kwargs: Any) -> Any:
    registry = Registry()
    loaded = registry.add(plugin)
    assert isinstance(loaded, LoadedPlugin), loaded
    hooks = Facade(registry).for_plugin(loaded.name)

    async def go() -> Any:
        return await getattr(hooks, hook)(bare_context(loaded.name), **kwargs)
    return asyncio.run(go())
