"""The host's services as this plugin uses them, on whichever hook API the host speaks.

Hook API 2.0 gives ``ctx.cache``, ``ctx.clock``, ``ctx.documents`` and
``ctx.delivery.step``; a 1.x host has ``ctx.store`` and ``ctx.delivery.remember``
only. Each helper uses the host's service when it is there and does the same job
with the older ones otherwise, so the plugin runs on both.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from callbridge.clock import SYSTEM, Clock
from callbridge.context import HookContext, find_record
from callbridge.events import FaxEvent
from callbridge.models import LogResult, Record

T = TypeVar("T")


def clock(ctx: HookContext) -> Clock:
    found = getattr(ctx, "clock", None)
    return found if found is not None else SYSTEM


async def cached(ctx: HookContext, key: str, loader: Callable[[], Awaitable[Any]], *,
                 ttl: float) -> Any:
    """``loader()``'s JSON value, kept ``ttl`` seconds for this (tenant, app)."""
    cache = getattr(ctx, "cache", None)
    if cache is not None and hasattr(cache, "get_or_load"):
        return await cache.get_or_load(key, loader, ttl=ttl)
    now = clock(ctx).now()
    raw = await ctx.store.get(f"cache:{key}")
    if raw:
        kept = json.loads(raw)
        if datetime.fromisoformat(kept["until"]) > now:
            return kept["value"]
    value = await loader()
    await ctx.store.set(f"cache:{key}", json.dumps(
        {"until": (now + timedelta(seconds=ttl)).isoformat(), "value": value}))
    return value


async def invalidate(ctx: HookContext, key: str) -> None:
    cache = getattr(ctx, "cache", None)
    if cache is not None and hasattr(cache, "invalidate"):
        await cache.invalidate(key)
    else:
        await ctx.store.delete(f"cache:{key}")


async def step(delivery: Any, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
               find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
    """The host's write protocol: a kept record; else, after an uncertain earlier
    attempt, the record ``find`` finds; else ``create``; remembered at once."""
    if delivery is None:
        return Record(kind=kind, id=await create(), step=key)
    if hasattr(delivery, "step"):
        record: Record = await delivery.step(kind, key, create=create, find=find)
        return record
    kept = find_record(delivery.records, kind, key)
    if kept is not None:
        return kept
    found = await find() if find is not None and delivery.attempt > 1 else None
    record = Record(kind=kind, id=found or await create(), step=key)
    await delivery.remember(record)
    return record


def marker(delivery: Any, event: Any) -> str:
    """The marker this delivery writes into the app: the host's (keyed ``cb2-``) where the
    delivery carries one, else the event's own."""
    given = getattr(delivery, "marker", None) if delivery is not None else None
    return str(given) if given else str(event.marker)


def is_retry(delivery: Any) -> bool:
    """Whether an earlier attempt may have written (an uncertain write to look for)."""
    return delivery is not None and delivery.attempt > 1


async def document(ctx: HookContext, event: FaxEvent) -> tuple[bytes, str, str | None] | None:
    """The fax's document (content, content type, file name), or None when it cannot be had.

    A URL is fetched by the host (``ctx.documents``) under its address policy; a
    host without that service hands over inline content only.
    """
    doc = event.document
    if doc is None:
        return None
    documents = getattr(ctx, "documents", None)
    if documents is not None:
        got = await documents.fetch(doc)
        return bytes(got.content), str(got.content_type), got.filename or doc.filename
    if doc.content is not None:
        return bytes(doc.content), doc.content_type, doc.filename
    return None


def result(records: tuple[Record, ...], *, missing: tuple[str, ...] = ()) -> LogResult:
    """A LogResult saying what is missing, in the host's words (``missing`` or ``note``)."""
    if not missing:
        return LogResult(records=records)
    if "missing" in LogResult.model_fields:
        return LogResult.model_validate({"records": records, "missing": missing})
    return LogResult.model_validate({"records": records,
                                     "note": f"{' and '.join(missing)} missing"})
