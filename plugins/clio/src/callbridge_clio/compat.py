"""The host's write protocol and cache, reached the same way under hook API 1.x and 2.0.

Under 2.0 the host holds both (``ctx.delivery.step``, ``ctx.cache.get_or_load``) and
these are one line each; under 1.x hosts they do the same work with ``remember`` and
``ctx.store``. The only copy of either in the plugin.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from callbridge.clock import SYSTEM, Clock
from callbridge.context import HookContext, find_record
from callbridge.models import Record

T = TypeVar("T")


def clock(ctx: HookContext) -> Clock:
    found: Clock | None = getattr(ctx, "clock", None)
    return found if found is not None else SYSTEM


async def step(ctx: HookContext, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
               find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
    """One write of a delivery, kept at once: a record kept earlier is returned; after
    an attempt that may have written, ``find`` (by the event's marker) runs before
    ``create``."""
    delivery = ctx.delivery
    if delivery is None:
        return Record(kind=kind, id=await create(), step=key)
    native = getattr(delivery, "step", None)
    if native is not None:
        record: Record = await native(kind, key, create=create, find=find)
        return record
    known = find_record(delivery.records, kind, key)
    if known is not None:
        return known
    found = await find() if find is not None and delivery.attempt > 1 else None
    record = Record(kind=kind, id=found if found is not None else await create(), step=key)
    await delivery.remember(record)
    return record


async def cached(ctx: HookContext, key: str, loader: Callable[[], Awaitable[Any]], *,
                 ttl: timedelta) -> Any:
    """A JSON value kept per (tenant, app) for ``ttl``, loaded when missing or old."""
    cache = getattr(ctx, "cache", None)
    if cache is not None:
        return await cache.get_or_load(key, loader, ttl=ttl.total_seconds())
    now = clock(ctx).now()
    raw = await ctx.store.get(f"cache:{key}")
    if raw:
        kept = json.loads(raw)
        if datetime.fromisoformat(kept["until"]) > now:
            return kept["value"]
    value = await loader()
    await ctx.store.set(f"cache:{key}", json.dumps({"until": (now + ttl).isoformat(),
                                                    "value": value}))
    return value


async def invalidate(ctx: HookContext, key: str) -> None:
    cache = getattr(ctx, "cache", None)
    if cache is not None:
        await cache.invalidate(key)
    else:
        await ctx.store.delete(f"cache:{key}")
