"""The event's marker on every record, and looking for a record after an uncertain write."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from callbridge.context import HookContext
from callbridge.errors import PermanentError
from callbridge.events import CallEvent, FaxEvent, SmsEvent
from callbridge.models import Record

from callbridge_hubspot import host
from callbridge_hubspot.api import HubSpotApi
from callbridge_hubspot.settings import OBJECT_KIND, api_for, options_of


async def marker_property(ctx: HookContext, api: HubSpotApi, object_type: str) -> str | None:
    """The property that carries the event's marker on ``object_type``, made if missing.

    None when the connection may not create properties (the log is still written,
    but a lost answer can no longer be found: see the docs' duplicate window).
    """
    name = options_of(ctx).marker_property

    async def ensure() -> bool:
        async with ctx.lock(f"property:{object_type}"):
            if await api.property_exists(object_type, name):
                return True
            try:
                await api.create_property(object_type, {
                    "name": name, "label": "callbridge event", "type": "string",
                    "fieldType": "text", "groupName": f"{OBJECT_KIND[object_type]}information",
                    "description": "Marks the record callbridge wrote for a phone-system event.",
                    "hidden": True, "formField": False})
            except PermanentError:
                ctx.log.warning("HubSpot refused the marker property on %s", object_type)
                return False
            return True

    ok = await host.cached(ctx, f"marker_property:{object_type}", ensure, ttl=86400)
    return name if ok else None


def delivery_key(ctx: HookContext) -> str:
    """What tells this delivery's writes from others' (its marker; on a 1.x host, its start)."""
    delivery = ctx.delivery
    if delivery is None:
        return "none"
    return str(getattr(delivery, "marker", None) or delivery.first_attempt_at.isoformat())


async def begin(ctx: HookContext, key: str) -> None:
    """Note when a write goes out, for :func:`settle` (kept by the host; no request)."""
    await ctx.store.set(f"write:{key}", host.clock(ctx).now().isoformat())


async def written(ctx: HookContext, key: str) -> None:
    """The write's answer came and its record is kept: its time is needed no more."""
    await ctx.store.delete(f"write:{key}")


async def settle(ctx: HookContext, key: str) -> None:
    """Wait until HubSpot's search has had ``search_settle_seconds`` since the write."""
    raw = await ctx.store.get(f"write:{key}")
    clock = host.clock(ctx)
    began = datetime.fromisoformat(raw) if raw else (
        ctx.delivery.first_attempt_at if ctx.delivery is not None else clock.now())
    left = options_of(ctx).search_settle_seconds - (clock.now() - began).total_seconds()
    if left > 0:
        await clock.sleep(left)


#: Markers asked for in one search: an ``IN`` of 50 keeps the body well under HubSpot's
#: 3,000 characters (a marker is 36).
MARKERS_PER_SEARCH = 50


async def find_marked(api: HubSpotApi, object_type: str, prop: str | None,
                      markers: list[str]) -> dict[str, str]:
    """marker -> record id of the records already carrying these markers."""
    out: dict[str, str] = {}
    if prop is None:
        return out
    for start in range(0, len(markers), MARKERS_PER_SEARCH):
        chunk = markers[start:start + MARKERS_PER_SEARCH]
        page = await api.search(object_type, [{"filters": [
            {"propertyName": prop, "operator": "IN", "values": chunk}]}],
            properties=[prop], limit=min(200, max(10, len(chunk) * 2)))
        for obj in sorted(page.results, key=lambda o: (len(o.id), o.id)):
            value = obj.prop(prop)
            if value and value not in out:
                out[value] = obj.id
    return out



async def write_one(ctx: HookContext, object_type: str, event: CallEvent | SmsEvent | FaxEvent,
                    build: Any) -> Record:
    """One record through the host's write protocol, carrying the event's marker."""
    api = await api_for(ctx)
    kind = OBJECT_KIND[object_type]
    prop = await marker_property(ctx, api, object_type)
    mark = host.marker(ctx.delivery, event)
    key = f"{kind}:{mark}"

    async def create() -> str:
        await begin(ctx, key)
        props, assoc = build((prop, mark) if prop else None)
        return (await api.create(object_type, props, assoc)).id

    async def find() -> str | None:
        await settle(ctx, key)
        return (await find_marked(api, object_type, prop, [mark])).get(mark)

    record = await host.step(ctx.delivery, kind, "log", create=create, find=find)
    await written(ctx, key)
    return record
