"""Contacts: the live search by number or e-mail, creation, and the changed-contacts feed
that keeps the host's phone index."""

from __future__ import annotations

from datetime import datetime, timedelta

from callbridge.context import HookContext
from callbridge.errors import PermanentError
from callbridge.events import ExternalParty
from callbridge.models import ChangedContacts, Contact
from callbridge.phones import search_forms, try_e164

from callbridge_clio.api import ClioApi, ClioContact


def to_contact(c: ClioContact) -> Contact:
    return Contact(id=str(c.id), name=c.name, phones=tuple(p.number for p in c.phone_numbers),
                   emails=tuple(e.address for e in c.email_addresses), updated_at=c.updated_at)


def search_texts(e164: str) -> list[str]:
    """What a live phone search asks Clio's ``query`` for, one request each.

    Clio documents its query only as a "wildcard search" over names, numbers and more,
    and connectors report it strict about how a number is written: it may match whole
    words, or the start of a value, or only the whole value. So every common way a
    number is stored is asked for: the last four digits (found inside any format by a
    substring or word search), then each form of :func:`callbridge.phones.search_forms`
    (E.164, the international and national formats, the national digits, and for North
    America "212-555-0142" and "212.555.0142"). Every candidate is then confirmed by
    reading its numbers as E.164. The phone index is the main path; this is the
    fallback while it is cold.
    """
    return list(dict.fromkeys([e164[-4:], *search_forms(e164)]))


async def search_by_number(ctx: HookContext, e164: str) -> list[ClioContact]:
    """Contacts with a stored number that reads as ``e164`` in the firm's region."""
    api = ClioApi(ctx.http)
    region = ctx.tenant.default_region
    found: dict[int, ClioContact] = {}
    for text in search_texts(e164):
        for c in await api.search_contacts(text):
            if c.id not in found and any(try_e164(p.number, region) == e164 for p in c.phone_numbers):
                found[c.id] = c
    return list(found.values())


async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    api = ClioApi(ctx.http)
    found: dict[int, ClioContact] = {}
    if party.e164:
        found.update((c.id, c) for c in await search_by_number(ctx, party.e164))
    if party.email:
        for c in await api.search_contacts(party.email):
            if any(e.address.lower() == party.email.lower() for e in c.email_addresses):
                found[c.id] = c
    return [to_contact(c) for c in found.values()]


def split_name(name: str) -> tuple[str, str]:
    """First and last name: the last word is the last name ("Mary Ann Lee" -> "Mary Ann", "Lee")."""
    words = name.split()
    if len(words) <= 1:
        return "", (words[0] if words else "Contact")
    return " ".join(words[:-1]), words[-1]


async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:
    api = ClioApi(ctx.http)
    if party.e164 is None:
        raise PermanentError("a Clio contact is created only for a phone number")
    if ctx.delivery is not None and ctx.delivery.attempt > 1:
        # An earlier attempt may have created it and timed out before the answer.
        # Contacts take no marker: read every contact created since then (a minute
        # earlier, for clocks that differ) with a plain filter rather than the text
        # search, whose index may not hold a contact made seconds ago.
        since = ctx.delivery.first_attempt_at - timedelta(minutes=1)
        region = ctx.tenant.default_region
        earlier = [c for c in await api.contacts_created_since(since)
                   if any(try_e164(p.number, region) == party.e164 for p in c.phone_numbers)]
        if earlier:
            return to_contact(min(earlier, key=lambda c: c.id))
    first, last = split_name(name)
    created = await api.create_contact({
        "type": "Person", "first_name": first, "last_name": last,
        "phone_numbers": [{"name": "Work", "number": party.e164, "default_number": True}],
        **({"email_addresses": [{"name": "Work", "address": party.email, "default_email": True}]}
           if party.email else {}),
    })
    return to_contact(created)


async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    """One page of contacts changed since ``since``; the cursor is Clio's page token."""
    rows, nxt = await ClioApi(ctx.http).contacts_page(updated_since=since, cursor=cursor)
    contacts = tuple(to_contact(c) for c in rows)
    newest = max((c.updated_at for c in rows if c.updated_at), default=None)
    return ChangedContacts(contacts=contacts, cursor=nxt, high_water=newest)
