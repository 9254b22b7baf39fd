"""Matters: a contact's open and pending matters, as its client or a related party,
read from a per-tenant matter index.

The index holds the firm's open and pending matters and every relationship (contact,
matter), kept in the host's store for the (tenant, app). An event that needs matters
syncs it first when its last sync is older than ``matter_staleness_seconds`` (five
minutes by default), so an idle firm costs nothing: the sync asks for the matters and
the relationships changed since the last one (both are filtered by ``updated_since``),
two requests when nothing pages. Clio's change feeds do not report deletions, so the
whole index is read again once a day (:data:`FULL_EVERY`).

What staleness can get wrong, for up to that many minutes: a matter opened, closed or
re-opened, or a contact made a related party, is not seen yet (a call is logged without
the matter, or with a matter just closed). docs/plugins/clio.md says so.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from callbridge.context import HookContext
from callbridge.models import Contact, Matter
from callbridge.ratelimit import priority

from callbridge_clio.api import ClioApi
from callbridge_clio.settings import OPEN_STATUSES, options

KEY = "matter_index"
#: How often the whole index is read again (deleted matters and relationships).
FULL_EVERY = timedelta(hours=24)
OPEN = frozenset(OPEN_STATUSES.split(","))


async def _load(ctx: HookContext) -> dict[str, Any] | None:
    raw = await ctx.store.get(KEY)
    return json.loads(raw) if raw else None


def _fresh(index: dict[str, Any] | None, now: datetime, staleness: timedelta) -> bool:
    return index is not None and datetime.fromisoformat(index["synced_at"]) > now - staleness


async def sync(ctx: HookContext, *, force: bool = False) -> dict[str, Any]:
    """Bring the index up to date (a no-op when another delivery just did)."""
    staleness = timedelta(seconds=options(ctx).matter_staleness_seconds)
    async with ctx.lock(KEY):
        index = await _load(ctx)
        now = ctx.clock.now()
        if not force and _fresh(index, now, staleness):
            assert index is not None
            return index
        full = index is None or datetime.fromisoformat(index["full_at"]) <= now - FULL_EVERY
        held = priority.set(-1)  # an index sync: deliveries that began writing go first
        try:
            index = await _read_changes(ctx, index, now, full=full)
        finally:
            priority.reset(held)
        await ctx.store.set(KEY, json.dumps(index, separators=(",", ":")))
        return index


async def _read_changes(ctx: HookContext, index: dict[str, Any] | None, now: datetime, *,
                        full: bool) -> dict[str, Any]:
    api = ClioApi(ctx.http)
    # The next sync asks from a little before this one began: clocks differ, and
    # reading a change twice is harmless.
    since = None if full or index is None else datetime.fromisoformat(index["since"])
    if full or index is None:
        matters: dict[str, Any] = {}
        related: dict[str, Any] = {}
        changed = await api.matters_changed(since=None, status=OPEN_STATUSES)
    else:
        matters, related = index["matters"], index["related"]
        changed = await api.matters_changed(since=since)
    for m in changed:
        if (m.status or "").lower() in OPEN:
            matters[str(m.id)] = {"name": m.display_number, "status": m.status,
                                  "client": str(m.client.id) if m.client else None}
        else:
            matters.pop(str(m.id), None)
    for r in await api.relationships_changed(since):
        if r.contact is not None and r.matter is not None:
            related[str(r.id)] = {"contact": str(r.contact.id), "matter": str(r.matter.id)}
    return {"synced_at": now.isoformat(), "since": (now - timedelta(minutes=1)).isoformat(),
            "full_at": now.isoformat() if full or index is None else index["full_at"],
            "matters": matters, "related": related}


async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:
    """Open and pending matters where the contact is the client or a related party."""
    staleness = timedelta(seconds=options(ctx).matter_staleness_seconds)
    index = await _load(ctx)
    if not _fresh(index, ctx.clock.now(), staleness):
        index = await sync(ctx)
    assert index is not None
    matters: dict[str, Any] = index["matters"]
    ids = [mid for mid, m in matters.items() if m["client"] == contact.id]
    ids += [r["matter"] for r in index["related"].values()
            if r["contact"] == contact.id and r["matter"] in matters]
    return [Matter(id=mid, name=matters[mid]["name"], status=matters[mid]["status"])
            for mid in sorted(dict.fromkeys(ids), key=int)]
