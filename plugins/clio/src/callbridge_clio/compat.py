"""The host's services as the plugin reaches them (hook API 2.0).

The write protocol is the host's (``ctx.delivery.step``) and so is the cache
(``ctx.cache.get_or_load``); these helpers only say what happens where a context has
neither, as when a hook is called by hand outside a delivery: the write is made
directly, the value loaded without keeping it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from callbridge.context import HookContext
from callbridge.models import Record


async def step(ctx: HookContext, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
               find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
    """One write of the delivery, through the host's write protocol."""
    if ctx.delivery is None:
        return Record(kind=kind, id=await create(), step=key)
    return await ctx.delivery.step(kind, key, create=create, find=find)


async def cached(ctx: HookContext, key: str, loader: Callable[[], Awaitable[Any]], *,
                 ttl: timedelta) -> Any:
    """A JSON value kept per (tenant, app) by the host for ``ttl``."""
    if ctx.cache is None:
        return await loader()
    return await ctx.cache.get_or_load(key, loader, ttl=ttl.total_seconds())
