"""Contacts, matters, staff and the activity code: everything the plugin reads."""

from __future__ import annotations

import inspect
import json
from datetime import datetime

from callbridge.context import HookContext
from callbridge.errors import PermanentError
from callbridge.events import ExternalParty
from callbridge.models import AppUser, ChangedContacts, Contact, Matter
from callbridge.phones import try_e164

from callbridge_smokeball import host
from callbridge_smokeball.api import (
    ActivityCode,
    SmokeballApi,
    SmokeballContact,
    Staff,
    from_ticks,
    to_ticks,
)
from callbridge_smokeball.settings import SmokeballSettings

#: Matter statuses that count as open for linking a log.
OPEN_STATUSES = ["Open", "Pending"]
#: Seconds the firm's staff list is kept (host cache).
STAFF_TTL = 15 * 60.0
#: Page size of a contacts sync (one page per call of contacts_changed_since).
SYNC_PAGE = 500


def options(ctx: HookContext) -> SmokeballSettings:
    return ctx.options if isinstance(ctx.options, SmokeballSettings) else SmokeballSettings()


def to_contact(c: SmokeballContact) -> Contact:
    return Contact(id=c.id, name=c.name, phones=tuple(c.phone_texts()), emails=tuple(c.emails()),
                   updated_at=from_ticks(c.last_updated) if c.last_updated else None,
                   deleted=c.is_deleted)


def digit_runs(e164: str) -> list[str]:
    """The digit runs a live search asks for, one request each, until a candidate confirms.

    Smokeball's search matches text, and a number is stored as typed
    (``{"areaCode": "212", "number": "555-0142"}``), so the whole number is rarely
    one run of digits. The last four digits almost always are ("555-0142",
    "5550142", "+1 646 555 0111"); numbers grouped in threes at the end
    ("0412 345 678") keep only the last three together, which is asked next.
    """
    digits = e164.lstrip("+")
    return [digits[-4:], digits[-3:]]


def reads_as(contact: SmokeballContact, e164: str, region: str) -> bool:
    return any(try_e164(t, region) == e164 for t in contact.phone_texts())


async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    api = SmokeballApi(ctx.http)
    region = ctx.tenant.default_region
    found: dict[str, SmokeballContact] = {}
    if party.e164:
        for run in digit_runs(party.e164):
            for c in await api.search_contacts(f"phone:*{run}*"):
                if not c.is_deleted and reads_as(c, party.e164, region):
                    found[c.id] = c
            if found:
                break
    if party.email:
        for c in await api.search_contacts(f"email:{party.email}"):
            if not c.is_deleted and party.email.lower() in (e.lower() for e in c.emails()):
                found[c.id] = c
    return [to_contact(c) for c in found.values()]


async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    """One page of contacts updated since ``since`` (``UpdatedSince`` in .NET ticks),
    oldest change first; ``cursor`` is the next page's offset."""
    api = SmokeballApi(ctx.http)
    params: dict[str, object] = {"Sort": "lastUpdated"}
    if since is not None:
        params["UpdatedSince"] = to_ticks(since)
    offset = int(cursor) if cursor else 0
    rows, size = await api.page("/contacts", SmokeballContact, params, offset=offset,
                                limit=SYNC_PAGE)
    nxt = offset + len(rows)
    more = bool(rows) and size is not None and nxt < size
    newest = max((c.last_updated for c in rows if c.last_updated), default=None)
    return ChangedContacts(contacts=tuple(to_contact(c) for c in rows),
                           cursor=str(nxt) if more else None,
                           high_water=from_ticks(newest) if newest else None)


async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:
    """A person with ``name`` and the number, carrying the event's marker in
    ``externalSystemId``; a retry finds the one an earlier attempt created by it."""
    if party.e164 is None:
        raise PermanentError("a Smokeball contact is created only for a phone number")
    api = SmokeballApi(ctx.http)
    mark = host.marker(ctx)
    e164 = party.e164
    first, last = split_name(name)
    person: dict[str, object] = {"firstName": first, "lastName": last,
                                 "phone": {"areaCode": "", "number": e164}}
    if party.email:
        person["email"] = party.email
    body: dict[str, object] = {"person": person}
    if mark:
        body["externalSystemId"] = mark

    async def create() -> str:
        link = await api.create("/contacts", body, request_id=host.request_id(ctx, mark, "contact"))
        assert link.id is not None
        return link.id

    async def find() -> str | None:
        region = ctx.tenant.default_region
        for c in await api.contacts_updated_since(host.since_first_attempt(ctx)):
            if (mark and c.external_system_id == mark) or (not mark and reads_as(c, e164, region)):
                return c.id
        return None

    # The key the host keeps a created contact under (pipeline: "create_contact").
    record = await host.step(ctx, "contact", "create_contact", create=create, find=find)
    return Contact(id=record.id, name=name, phones=(e164,),
                   emails=(party.email,) if party.email else ())


def split_name(name: str) -> tuple[str, str]:
    """First and last name: the last word is the last name ("Mary Ann Lee" -> "Mary Ann", "Lee")."""
    words = name.split()
    if len(words) <= 1:
        return "", (words[0] if words else "Contact")
    return " ".join(words[:-1]), words[-1]


async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:
    """The contact's Open and Pending matters, as ``ContactId`` selects them; kept in the
    host's cache for ``matters_ttl_seconds`` (0: asked every time)."""
    async def load() -> list[dict[str, object]]:
        rows = await SmokeballApi(ctx.http).matters_of(contact.id, OPEN_STATUSES)
        return [Matter(id=m.id, name=m.number or m.title, status=m.status).model_dump()
                for m in rows if (m.status or "").lower() in {s.lower() for s in OPEN_STATUSES}]

    ttl = options(ctx).matters_ttl_seconds
    rows = await (host.cached(ctx, f"matters:{contact.id}", load, ttl=ttl) if ttl else load())
    return [Matter.model_validate(m) for m in rows]


# --- staff ------------------------------------------------------------------------------


async def staff(ctx: HookContext) -> list[Staff]:
    """The firm's staff, kept in the host's cache for :data:`STAFF_TTL`."""
    async def load() -> list[dict[str, object]]:
        return [s.model_dump(by_alias=True) for s in await SmokeballApi(ctx.http).staff()]

    rows = await host.cached(ctx, "staff", load, ttl=STAFF_TTL)
    return [Staff.model_validate(r) for r in rows]


def active(s: Staff) -> bool:
    return s.enabled and not s.former


def to_user(s: Staff) -> AppUser:
    return AppUser(id=s.id, name=s.name or None, email=s.email)


async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    if not email:
        return None
    for s in await staff(ctx):
        if active(s) and (s.email or "").lower() == email.lower():
            return to_user(s)
    return None


def sort_key(s: Staff, how: str) -> tuple[str, ...]:
    first, last = (s.first_name or "").casefold(), (s.last_name or "").casefold()
    if how == "display_name":
        return (f"{first} {last}".strip(), s.id)
    return (last, first, s.id)


async def pick_default_user(ctx: HookContext) -> AppUser | None:
    """The first enabled, current staff member by the ``default_user_sort`` key."""
    how = options(ctx).default_user_sort
    candidates = sorted((s for s in await staff(ctx) if active(s)), key=lambda s: sort_key(s, how))
    return to_user(candidates[0]) if candidates else None


# --- the activity code --------------------------------------------------------------------


def same_code(a: str | None, b: str) -> bool:
    """Codes are matched ignoring case and surrounding spaces ("cb-call" is "CB-CALL")."""
    return (a or "").strip().casefold() == b.strip().casefold()


async def ensure_activity_code(ctx: HookContext, label: str) -> str:
    """The code labelled ``label``, created (a Time code) only if no code has that label.

    Under the ledger-held lock ``activity_code``: the list is read to the end and
    compared; a code this connection created is noted in ``ctx.store`` before the
    lock is released, so a second process does not create another while Smokeball
    has not yet made the first readable. An existing code is never changed.
    Returns the code as Smokeball spells it (what a fee's ``activityCode`` takes).
    """
    label = label.strip()
    if not 1 <= len(label) <= 20:
        raise PermanentError("the activity code label must be 1 to 20 characters")
    api = SmokeballApi(ctx.http)
    note_key = f"activity_code_created:{label.casefold()}"
    async with ctx.lock("activity_code"):
        noted = await ctx.store.get(note_key)
        if noted:
            return str(json.loads(noted)["code"])
        codes: list[ActivityCode] = await api.activity_codes()
        for code in codes:
            if not code.is_deleted and same_code(code.code, label):
                return code.code or label
        opts = options(ctx)
        link = await api.create("/activitycodes", {
            "type": 1, "code": label, "description": opts.activity_code_description,
            "isBillable": ctx.settings.default_billable, "rateType": 0,
        }, request_id=host.request_id(ctx, None, "activity_code"))
        await ctx.store.set(note_key, json.dumps({"code": label, "id": link.id}))
        return label


def code_label(ctx: HookContext) -> str:
    """The label the code is found by: the host's per-app setting where it has one."""
    host_label = getattr(ctx.settings, "activity_code_label", None)
    return str(host_label or options(ctx).activity_code)


async def forget_activity_code(ctx: HookContext, label: str) -> None:
    """Drop what this plugin keeps of the code (Smokeball no longer knows it)."""
    key = f"activity_code:{label.casefold()}"
    cache = getattr(ctx, "cache", None)
    if cache is not None:
        done = cache.invalidate(key)
        if inspect.isawaitable(done):
            await done
    await ctx.store.delete(f"cache:{key}")
    await ctx.store.delete(f"activity_code_created:{label.casefold()}")


async def activity_code(ctx: HookContext, given: str | None) -> str:
    """The code a fee carries: the host's reference, else ensured here once and kept."""
    if given:
        return given
    label = code_label(ctx)

    async def load() -> str:
        return await ensure_activity_code(ctx, label)

    return str(await host.cached(ctx, f"activity_code:{label.casefold()}", load, ttl=24 * 3600.0))
