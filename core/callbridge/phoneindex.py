"""The per-tenant phone index: contacts' numbers in E.164, for apps whose own
phone search is unreliable.

Kept in the ledger as keyed hashes of the numbers (never the numbers). Fed by
the ``contacts_changed_since`` hook; read by the pipeline instead of a live
search. A hit is confirmed against the app now and then (a changed-since feed
does not report deletions); a miss is confirmed by a catch-up sync before the
pipeline creates a contact, so a contact added minutes ago is never duplicated.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from callbridge.capabilities import Capability
from callbridge.clock import SYSTEM, Clock
from callbridge.context import HookContext
from callbridge.events import ExternalParty
from callbridge.models import Contact
from callbridge.phones import try_e164

if TYPE_CHECKING:
    from callbridge.facade import Hooks
    from callbridge.ledger import Ledger

log = logging.getLogger("callbridge.index")
T = TypeVar("T")

#: How long a hit is trusted before it is confirmed against the app again.
RECHECK_AFTER = timedelta(hours=24)
#: An index synced longer ago than this confirms every miss with a catch-up sync.
STALE_AFTER = timedelta(minutes=5)


def readable_numbers(contact: Contact, region: str) -> tuple[list[str], int]:
    """The contact's numbers in E.164, and how many stored numbers were unreadable."""
    out, unreadable = [], 0
    for text in contact.phones:
        e164 = try_e164(text, region)
        if e164 is None:
            unreadable += 1
        elif e164 not in out:
            out.append(e164)
    return out, unreadable


def matches_party(contact: Contact, party: ExternalParty, region: str) -> bool:
    """Whether the contact really is this party: a stored number reads as its E.164,
    or (when the event carries one) an email is equal."""
    if party.e164 and party.e164 in readable_numbers(contact, region)[0]:
        return True
    if party.email:
        return party.email.lower() in {e.lower() for e in contact.emails}
    return False


class _Thread:
    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))


class PhoneIndex:
    """The index service, shared by every plugin that declares ``contacts_changed``.

    Also remembers the contacts the host created per number (for every app), so
    the second look before a creation finds them even where the app's search lags.
    """

    def __init__(self, ledger: Ledger, gw: Any = None, clock: Clock = SYSTEM) -> None:
        self.ledger = ledger
        self._gw = gw or _Thread()
        self.clock = clock

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        result: T = await self._gw.run(fn, *args, **kwargs)
        return result

    def _created_key(self, tenant: str, e164: str) -> str:
        digest = getattr(self.ledger, "digest", None) or self.ledger._cipher.digest
        return "created-contact:" + str(digest(tenant, e164))

    async def created_for(self, ctx: HookContext, e164: str) -> list[str]:
        """The contacts the host created in this app for this number, oldest first."""
        raw = await self._db(self.ledger.kv_get, ctx.tenant_id, ctx.app,
                             self._created_key(ctx.tenant_id, e164))
        return list(json.loads(raw)) if raw else []

    async def note_created(self, ctx: HookContext, e164: str, contact_id: str) -> None:
        """Remember a contact created for this number (called under the number's lock)."""
        ids = await self.created_for(ctx, e164)
        if contact_id not in ids:
            ids.append(contact_id)
        await self._db(self.ledger.kv_set, ctx.tenant_id, ctx.app,
                       self._created_key(ctx.tenant_id, e164), json.dumps(ids))

    def uses_index(self, hooks: Hooks) -> bool:
        return hooks.supports(Capability.CONTACTS_CHANGED)

    async def synced(self, ctx: HookContext) -> bool:
        _, synced_at = await self._db(self.ledger.index_state, ctx.tenant_id, ctx.app)
        return synced_at is not None

    async def sync(self, ctx: HookContext, hooks: Hooks, *, max_pages: int | None = None,
                   unless_since: datetime | None = None) -> int:
        """Catch up from the stored high-water mark; return the contacts seen.

        ``unless_since``: skip if a sync started after that moment (another
        lookup's catch-up, finished while this one waited for the lock).
        """
        async with ctx.lock("phone_index"):
            high_water, synced_at = await self._db(self.ledger.index_state, ctx.tenant_id,
                                                            ctx.app)
            if unless_since is not None and synced_at is not None and synced_at >= unless_since:
                return 0
            started = self.clock.now()
            cursor: str | None = None
            seen = unreadable_ids = 0
            newest = high_water
            pages = 0
            while True:
                page = await hooks.contacts_changed_since(ctx, since=high_water, cursor=cursor)
                for contact in page.contacts:
                    seen += 1
                    if contact.deleted:
                        await self._db(self.ledger.index_remove, ctx.tenant_id, ctx.app, contact.id)
                        continue
                    numbers, unreadable = readable_numbers(contact, ctx.tenant.default_region)
                    if unreadable and await self._report_unreadable(ctx, contact.id, unreadable):
                        unreadable_ids += 1
                    await self._db(
                        self.ledger.index_put, ctx.tenant_id, ctx.app, contact.id, numbers,
                        updated_at=contact.updated_at, name=contact.name)
                    if contact.updated_at and (newest is None or contact.updated_at > newest):
                        newest = contact.updated_at
                if page.high_water and (newest is None or page.high_water > newest):
                    newest = page.high_water
                cursor = page.cursor
                pages += 1
                if cursor is None or (max_pages is not None and pages >= max_pages):
                    break
            # The next sync starts a little before the newest change we saw: clocks and
            # the app's update times differ, and re-reading a contact is harmless.
            mark = (newest - timedelta(seconds=1)) if newest else started - timedelta(seconds=1)
            await self._db(self.ledger.set_index_state, ctx.tenant_id, ctx.app,
                                    high_water=mark, synced_at=started)
            if unreadable_ids:
                log.warning("phone index %s/%s: %d more contact(s) with unreadable numbers (ids in "
                            "the store under 'index:unreadable')", ctx.tenant_id, ctx.app, unreadable_ids)
            return seen

    async def _report_unreadable(self, ctx: HookContext, contact_id: str, count: int) -> bool:
        """Keep the contact in the report; True when it is news (warned once, not per sync)."""
        raw = await ctx.store.get("index:unreadable")
        report = json.loads(raw) if raw else {}
        if report.get(contact_id) == count:
            return False
        report[contact_id] = count
        await ctx.store.set("index:unreadable", json.dumps(report, sort_keys=True))
        return True

    async def lookup(self, ctx: HookContext, hooks: Hooks, party: ExternalParty, *,
                     confirm_miss: bool = True) -> list[Contact]:
        """Contacts matching the party: from the index where it serves this app, else live.

        A miss is confirmed by a catch-up sync (a contact added minutes ago) when
        ``confirm_miss`` (a contact would be created next) or when the index is older
        than :data:`STALE_AFTER`; otherwise a miss costs no request.
        """
        region = ctx.tenant.default_region
        if party.e164 is None or not self.uses_index(hooks):
            return await self.live(ctx, hooks, party)
        _, synced_at = await self._db(self.ledger.index_state, ctx.tenant_id, ctx.app)
        if synced_at is None:
            return await self.live(ctx, hooks, party)
        asked = self.clock.now()
        entries = await self._db(self.ledger.index_lookup, ctx.tenant_id, ctx.app, party.e164)
        stale = (asked - synced_at) > STALE_AFTER
        if not entries and not (confirm_miss or stale):
            return []
        if not entries:
            # Confirm the miss (a contact added minutes ago) with a catch-up sync.
            await self.sync(ctx, hooks, unless_since=asked)
            entries = await self._db(self.ledger.index_lookup, ctx.tenant_id, ctx.app, party.e164)
            if not entries:
                return []
        now = self.clock.now()
        if any(e.checked_at is None or now - e.checked_at > RECHECK_AFTER for e in entries):
            # Now and then, a hit is confirmed live: deletions never reach the feed.
            live = await self.live(ctx, hooks, party)
            live_ids = {c.id for c in live}
            for entry in entries:
                if entry.contact_id in live_ids:
                    await self._db(self.ledger.index_mark_checked, ctx.tenant_id, ctx.app,
                                            entry.contact_id)
                else:
                    await self._db(self.ledger.index_remove, ctx.tenant_id, ctx.app,
                                            entry.contact_id)
            for contact in live:
                numbers, _ = readable_numbers(contact, region)
                await self._db(self.ledger.index_put, ctx.tenant_id, ctx.app, contact.id,
                                        numbers, updated_at=contact.updated_at, name=contact.name,
                                        now=now)
                await self._db(self.ledger.index_mark_checked, ctx.tenant_id, ctx.app,
                                        contact.id, now)
            return live
        return [Contact(id=e.contact_id, name=e.name, updated_at=e.updated_at, phones=(party.e164,))
                for e in entries]

    async def live(self, ctx: HookContext, hooks: Hooks, party: ExternalParty) -> list[Contact]:
        """A live search, every candidate re-checked in E.164 (or by email)."""
        found = await hooks.find_contact(ctx, party=party)
        return [c for c in found if not c.deleted and matches_party(c, party, ctx.tenant.default_region)]

    async def add(self, ctx: HookContext, hooks: Hooks, contact: Contact) -> None:
        """Put a contact the pipeline just created in the index."""
        if not self.uses_index(hooks):
            return
        numbers, _ = readable_numbers(contact, ctx.tenant.default_region)
        await self._db(self.ledger.index_put, ctx.tenant_id, ctx.app, contact.id, numbers,
                                updated_at=contact.updated_at, name=contact.name)
