"""Small builders shared by the host tests."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from callbridge.context import HookContext, MemoryStore
from callbridge.facade import Facade
from callbridge.plugins import LoadedPlugin, Registry
from callbridge.settings import AppSettings, TenantSettings


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
