"""Contacts and owners: the lookups, the phone index's feed, contact creation."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from callbridge.context import HookContext
from callbridge.errors import PermanentError
from callbridge.events import ExternalParty
from callbridge.hookspecs import hookimpl
from callbridge.models import AppUser, ChangedContacts, Contact
from callbridge.phones import national_digits, search_forms, try_e164

from callbridge_hubspot import host
from callbridge_hubspot.api import CONTACT_PROPERTIES, HubSpotApi, HubSpotObject
from callbridge_hubspot.settings import api_for, options_of
from callbridge_hubspot.writes import begin, delivery_key, settle, written

#: How long a contact the plugin created is used for further events from its number,
#: before the phone index (or HubSpot's search) knows it.
CREATED_KEPT_FOR = timedelta(hours=1)


def _contact(obj: HubSpotObject) -> Contact:
    p = obj.properties
    name = " ".join(x for x in (p.get("firstname"), p.get("lastname")) if x) or None
    phones = tuple(x for x in (p.get("phone"), p.get("mobilephone")) if x)
    emails = tuple(x for x in (p.get("email"),) if x)
    changed = p.get("lastmodifieddate")
    return Contact(id=obj.id, name=name, phones=phones, emails=emails,
                   updated_at=datetime.fromisoformat(changed.replace("Z", "+00:00"))
                   if changed else obj.updated_at)


def phone_filter_groups(e164: str) -> list[dict[str, Any]]:
    """HubSpot's normalised phone properties with the national number, then the stored
    strings as typed (E.164 and the common forms): one filter group each, OR-ed."""
    national = national_digits(e164)
    forms = search_forms(e164)[:6]
    return [
        {"filters": [{"propertyName": "hs_searchable_calculated_phone_number",
                      "operator": "EQ", "value": national}]},
        {"filters": [{"propertyName": "hs_searchable_calculated_mobile_number",
                      "operator": "EQ", "value": national}]},
        {"filters": [{"propertyName": "phone", "operator": "IN", "values": forms}]},
        {"filters": [{"propertyName": "mobilephone", "operator": "IN", "values": forms}]},
    ]


def _reads_as(obj: HubSpotObject, e164: str, region: str) -> bool:
    return any(try_e164(n, region) == e164 for n in (obj.prop("phone"), obj.prop("mobilephone"))
               if n)


async def search_contacts(ctx: HookContext, api: HubSpotApi, party: ExternalParty
                          ) -> list[HubSpotObject]:
    """Contacts confirmed as the party: a stored number reads as its E.164, or the email
    is equal. One search (up to five filter groups)."""
    groups = phone_filter_groups(party.e164) if party.e164 else []
    if party.email:
        groups.append({"filters": [{"propertyName": "email", "operator": "EQ",
                                    "value": party.email.lower()}]})
    if not groups:
        return []
    region = ctx.tenant.default_region
    found: dict[str, HubSpotObject] = {}
    after: str | None = None
    for _ in range(5):  # a number shared by more than 500 contacts is not a person's
        page = await api.search("contacts", groups, properties=CONTACT_PROPERTIES, limit=100,
                                after=after)
        for obj in page.results:
            email = (obj.prop("email") or "").lower()
            if (party.e164 and _reads_as(obj, party.e164, region)) or (
                    party.email and email == party.email.lower()):
                found[obj.id] = obj
        after = page.after
        if not after:
            break
    return list(found.values())


@hookimpl
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    api = await api_for(ctx)
    return [_contact(c) for c in await search_contacts(ctx, api, party)]


def split_name(name: str) -> tuple[str, str]:
    """First and last name: the last word is the last name."""
    words = name.split()
    if len(words) <= 1:
        return "", (words[0] if words else "Contact")
    return " ".join(words[:-1]), words[-1]


@hookimpl
async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:
    if party.e164 is None:
        raise PermanentError("a HubSpot contact is created only for a phone number")
    api = await api_for(ctx)
    e164 = party.e164
    first, last = split_name(name)
    props = {"firstname": first, "lastname": last, "phone": e164}
    if party.email:
        props["email"] = party.email
    made: dict[str, HubSpotObject] = {}

    key = f"contact:{delivery_key(ctx)}"

    async def create() -> str:
        await begin(ctx, key)
        obj = await api.create("contacts", props)
        made[obj.id] = obj
        return obj.id

    async def find() -> str | None:
        # An earlier attempt may have created it before its answer was lost.
        await settle(ctx, key)
        hits = await search_contacts(ctx, api, ExternalParty.model_validate(
            {"number": e164}, context={"region": ctx.tenant.default_region}))
        return min((h.id for h in hits), key=lambda i: (len(i), i)) if hits else None

    # One contact per new number, however many deliveries from it run at once: creation
    # is serialised per number, and a contact made for it lately is used, not searched
    # for (HubSpot's search sees a new contact only moments later).
    digest = hashlib.sha256(f"{ctx.tenant_id}|{e164}".encode()).hexdigest()[:32]
    async with ctx.lock(f"create_contact:{digest}"):
        now = host.clock(ctx).now()
        raw = await ctx.store.get(f"created_contact:{digest}")
        if raw:
            kept = json.loads(raw)
            if datetime.fromisoformat(kept["at"]) > now - CREATED_KEPT_FOR:
                return Contact(id=kept["id"], phones=(e164,))
        record = await host.step(ctx.delivery, "contact", "create_contact", create=create,
                                 find=find)
        await written(ctx, key)
        # The contact's id and when: no name, no number (the key is a digest).
        await ctx.store.set(f"created_contact:{digest}", json.dumps(
            {"id": record.id, "at": now.isoformat()}))
    if record.id in made:
        return _contact(made[record.id])
    return Contact(id=record.id, name=name, phones=(e164,))


@hookimpl
async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    """One page of contacts by ``lastmodifieddate``, oldest first.

    The cursor is HubSpot's ``after``; near the search's 10,000-result cap the next
    page starts again from the newest change seen (``t<epoch ms>``).
    """
    api = await api_for(ctx)
    after: str | None = None
    start = int(since.timestamp() * 1000) if since else 0
    if cursor and cursor.startswith("t"):
        start = int(cursor[1:])
    elif cursor:
        after = cursor
    groups = [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                            "value": str(start)}]}]
    page = await api.search("contacts", groups, properties=CONTACT_PROPERTIES, limit=200,
                            after=after, sorts=[{"propertyName": "lastmodifieddate",
                                                 "direction": "ASCENDING"}])
    contacts = tuple(_contact(c) for c in page.results)
    newest = max((c.updated_at for c in contacts if c.updated_at), default=None)
    nxt = page.after
    if nxt is not None and int(nxt) + 200 >= 10_000 and newest is not None:
        nxt = f"t{int(newest.timestamp() * 1000)}"
    return ChangedContacts(contacts=contacts, cursor=nxt, high_water=newest)


# --- owners ---------------------------------------------------------------------------------


async def owners(ctx: HookContext) -> list[AppUser]:
    api = await api_for(ctx)

    async def load() -> list[dict[str, Any]]:
        return [{"id": o.id, "name": o.name, "email": o.email} for o in await api.owners()]

    ttl = options_of(ctx).owners_cache_minutes * 60
    return [AppUser.model_validate(o) for o in await host.cached(ctx, "owners", load, ttl=ttl)]


def _by_email(users: list[AppUser], email: str) -> AppUser | None:
    return next((u for u in users if (u.email or "").lower() == email.lower()), None)


@hookimpl
async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    """The HubSpot owner (its owner id, never the user id) with the staff member's email."""
    return _by_email(await owners(ctx), email) if email else None


@hookimpl
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    """The owner named by ``default_owner_email``; none: the log has no owner."""
    email = options_of(ctx).default_owner_email
    return _by_email(await owners(ctx), email) if email else None
