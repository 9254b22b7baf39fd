"""The host's services the plugin uses, each with a fallback for hosts that lack it.

The write protocol (``ctx.delivery.step``), the shared cache (``ctx.cache``) and
the injected clock (``ctx.clock``) are used where the host offers them; on a host
without them the same rules run here, over ``ctx.delivery.remember`` and
``ctx.store``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from callbridge.context import HookContext, find_record
from callbridge.models import Record

from callbridge_smokeball.render import AnyEvent


def now(ctx: HookContext) -> datetime:
    clock = getattr(ctx, "clock", None)
    return clock.now() if clock is not None else datetime.now(UTC)


def marker(ctx: HookContext, event: AnyEvent | None = None) -> str | None:
    """The event's marker: the delivery's where the host gives it, else the event's."""
    given = getattr(ctx.delivery, "marker", None) if ctx.delivery is not None else None
    if isinstance(given, str) and given:
        return given
    return event.marker if event is not None else None


def request_id(ctx: HookContext, mark: str | None, step: str) -> str:
    """The ``RequestId`` header of a write: the marker and the step (``cb1-…:fee``)."""
    return f"{mark or 'callbridge'}:{step}"


def since_first_attempt(ctx: HookContext, slack: timedelta = timedelta(minutes=5)) -> datetime:
    """From when an earlier attempt's record could be dated, with room for clocks that differ."""
    first = ctx.delivery.first_attempt_at if ctx.delivery is not None else now(ctx)
    return first - slack


async def step(ctx: HookContext, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
               find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
    """One write of a log, at most once: the host's ``ctx.delivery.step`` where it exists.

    Otherwise the same rules here: a record kept by an earlier attempt is returned;
    on a later attempt ``find`` looks for the record by the event's marker before
    anything is created; a created record is remembered at once.
    """
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
    if delivery.attempt > 1 and find is not None:
        found = await find()
        if found is not None:
            record = Record(kind=kind, id=found, step=key)
            await delivery.remember(record)
            return record
    record = Record(kind=kind, id=await create(), step=key)
    await delivery.remember(record)
    return record


async def cached(ctx: HookContext, key: str, loader: Callable[[], Awaitable[Any]], *,
                 ttl: float) -> Any:
    """A JSON value kept for ``ttl`` seconds: ``ctx.cache`` where it exists, else ``ctx.store``."""
    cache = getattr(ctx, "cache", None)
    if cache is not None:
        return await cache.get_or_load(key, loader, ttl=ttl)
    raw = await ctx.store.get(f"cache:{key}")
    if raw:
        kept = json.loads(raw)
        if datetime.fromisoformat(kept["until"]) > now(ctx):
            return kept["value"]
    value = await loader()
    until = now(ctx) + timedelta(seconds=ttl)
    await ctx.store.set(f"cache:{key}", json.dumps({"until": until.isoformat(), "value": value}))
    return value
