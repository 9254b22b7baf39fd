"""The Clio Manage plugin: calls, SMS and faxes into Clio (API v4).

What is written (docs/plugins/clio.md has the details and the reasons):

* a call: a PhoneCommunication, plus a TimeEntry for the talk time when the call
  was completed; an SMS: a PhoneCommunication; a fax: a PhoneCommunication and
  the fax document, uploaded through Clio's three-step flow and linked to it.
* every communication and document carries the event's marker in
  ``external_properties`` and is looked up by it before a retry creates again;
  a time entry is found through its communication; a contact through a search
  of contacts created since the first attempt, re-checked by number.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

import phonenumbers
from callbridge.capabilities import Capability, Connection, Declaration, OAuth2Config, RateBucket
from callbridge.context import HookContext, find_record
from callbridge.errors import AppError, PermanentError, SkipEvent, TransientError
from callbridge.events import CallEvent, CallOutcome, Direction, ExternalParty, FaxEvent, SmsEvent
from callbridge.hookspecs import hookimpl
from callbridge.models import (
    AppUser,
    ChangedContacts,
    Contact,
    LogResult,
    LogTarget,
    Matter,
    Record,
)
from callbridge.phones import search_forms, try_e164
from pydantic import BaseModel, ConfigDict, Field

from callbridge_clio.api import MARKER, ClioApi, ClioContact

try:
    __version__ = version("callbridge-clio")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

HOSTS = {"US": "app.clio.com", "EU": "eu.app.clio.com", "CA": "ca.app.clio.com", "AU": "au.app.clio.com"}
#: The minor API version every request asks for (X-API-VERSION), so behaviour cannot change silently.
API_VERSION = "4.0.13"
#: Matter statuses that count as open for linking a log.
OPEN_STATUSES = "open,pending"
#: How long the firm's users and activity descriptions are kept in the host's store.
CACHE_FOR = timedelta(minutes=15)
#: Uploads retried by the host this many times before the log is kept without its document.
UPLOAD_ATTEMPTS = 3


class ClioSettings(BaseModel):
    """The plugin's options (``[tenants.X.apps.clio.options]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Literal["US", "EU", "CA", "AU"] = "US"
    api_base_url: str | None = Field(
        default=None, description="override the API base (a sandbox); default from the region")
    fax_folder: str | None = Field(default="Faxes", description="folder for fax documents; none: the root")
    activity_description: str | None = Field(
        default=None, description="name of an existing Clio activity description for call time entries")
    time_entry_note: str = "Phone call"
    time_entry_billable: bool | None = Field(
        default=None, description="billable status of call time entries; none: the app's default_billable")
    api_version: str = Field(
        default=API_VERSION, pattern=r"^4\.0\.\d+$", description="the X-API-VERSION every request pins")

    @property
    def host(self) -> str:
        return f"https://{HOSTS[self.region]}"

    @property
    def base_url(self) -> str:
        return self.api_base_url or f"{self.host}/api/v4"

    @property
    def oauth_base(self) -> str:
        return self.base_url.removesuffix("/api/v4") if self.api_base_url else self.host


@hookimpl
def declare() -> Declaration:
    return Declaration(
        name="clio", title="Clio", version=__version__, hook_api_version="1.0",
        capabilities=frozenset({
            Capability.CALLS, Capability.SMS, Capability.FAX, Capability.CONTACT_SEARCH_PHONE,
            Capability.CONTACT_SEARCH_EMAIL, Capability.CONTACT_CREATION, Capability.CONTACTS_CHANGED,
            Capability.MATTERS, Capability.USERS, Capability.LATE_DETAILS, Capability.FILE_ATTACHMENTS,
            Capability.CUSTOM_FIELDS, Capability.LOG_WITHOUT_CONTACT, Capability.MULTI_CONTACT_LINK,
        }),
        settings_model=ClioSettings,
        # Clio: 50 requests per minute per access token at peak hours.
        rate_limits=(RateBucket(name="api", requests=50, per_seconds=60.0, scope="token"),),
    )


@hookimpl
def connection(options: ClioSettings | None) -> Connection:
    opts = options or ClioSettings()
    return Connection(
        base_url=opts.base_url, auth="oauth2", headers={"X-API-VERSION": opts.api_version},
        oauth2=OAuth2Config(
            authorize_url=f"{opts.oauth_base}/oauth/authorize", token_url=f"{opts.oauth_base}/oauth/token",
            revoke_url=f"{opts.oauth_base}/oauth/deauthorize",
            extra_authorize_params={"redirect_on_decline": "true"}))


def _options(ctx: HookContext) -> ClioSettings:
    return ctx.options if isinstance(ctx.options, ClioSettings) else ClioSettings()


def _contact(c: ClioContact) -> Contact:
    return Contact(id=str(c.id), name=c.name, phones=tuple(p.number for p in c.phone_numbers),
                   emails=tuple(e.address for e in c.email_addresses), updated_at=c.updated_at)


def search_texts(e164: str) -> list[str]:
    """What a live phone search asks Clio's ``query`` for, one request each.

    Clio's query is a wildcard search over text, not a number match, and how it
    splits text into words is not documented. Asked: the last four digits, which
    stay together in most ways a number is written ("(212) 555-0142",
    "+1 646 555 0111", "tel:+1-212-555-0142"), whether the search matches
    substrings or whole words; then each form of :func:`callbridge.phones.search_forms`
    those four digits cannot stand for: a number written as one run of digits
    (E.164, the national digits) is one word, and some formats split the last four
    ("0491 570 156"). A form ending in the four digits as a word of their own
    ("212-555-0142") finds nothing they do not. Every candidate is then confirmed by
    reading its numbers as E.164.
    """
    tail = e164[-4:]
    texts = [tail]
    for form in search_forms(e164):
        if form not in texts and not re.search(rf"\D{tail}$", form):
            texts.append(form)
    return texts


async def _search_by_number(ctx: HookContext, e164: str) -> list[ClioContact]:
    """Contacts with a stored number that reads as ``e164`` in the firm's region."""
    api = ClioApi(ctx.http)
    region = ctx.tenant.default_region
    found: dict[int, ClioContact] = {}
    for text in search_texts(e164):
        for c in await api.search_contacts(text):
            if c.id not in found and any(try_e164(p.number, region) == e164 for p in c.phone_numbers):
                found[c.id] = c
    return list(found.values())


# --- contacts -------------------------------------------------------------------------


@hookimpl
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    api = ClioApi(ctx.http)
    found: dict[int, ClioContact] = {}
    if party.e164:
        found.update((c.id, c) for c in await _search_by_number(ctx, party.e164))
    if party.email:
        for c in await api.search_contacts(party.email):
            if any(e.address.lower() == party.email.lower() for e in c.email_addresses):
                found[c.id] = c
    return [_contact(c) for c in found.values()]


def split_name(name: str) -> tuple[str, str]:
    """First and last name: the last word is the last name ("Mary Ann Lee" -> "Mary Ann", "Lee")."""
    words = name.split()
    if len(words) <= 1:
        return "", (words[0] if words else "Contact")
    return " ".join(words[:-1]), words[-1]


@hookimpl
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
            return _contact(min(earlier, key=lambda c: c.id))
    first, last = split_name(name)
    created = await api.create_contact({
        "type": "Person", "first_name": first, "last_name": last,
        "phone_numbers": [{"name": "Work", "number": party.e164, "default_number": True}],
        **({"email_addresses": [{"name": "Work", "address": party.email, "default_email": True}]}
           if party.email else {}),
    })
    return _contact(created)


@hookimpl
async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    rows, nxt = await ClioApi(ctx.http).contacts_page(updated_since=since, cursor=cursor)
    contacts = tuple(_contact(c) for c in rows)
    newest = max((c.updated_at for c in rows if c.updated_at), default=None)
    return ChangedContacts(contacts=contacts, cursor=nxt, high_water=newest)


# --- matters and users ----------------------------------------------------------------


@hookimpl
async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:
    """Open and pending matters where the contact is the client or a related party."""
    api = ClioApi(ctx.http)
    cid = int(contact.id)
    found: dict[int, Matter] = {}
    for m in await api.client_matters(cid, OPEN_STATUSES):
        found[m.id] = Matter(id=str(m.id), name=m.display_number, status=m.status)
    for rel in await api.relationships(cid):
        related = rel.matter
        if related is not None and (related.status or "").lower() in OPEN_STATUSES.split(","):
            found.setdefault(related.id, Matter(id=str(related.id), name=related.display_number,
                                                status=related.status))
    return list(found.values())


async def _users(ctx: HookContext) -> list[AppUser]:
    # The firm's users change rarely: kept in the host's store for a while.
    raw = await ctx.store.get("users")
    if raw:
        cached = json.loads(raw)
        if datetime.fromisoformat(cached["at"]) > datetime.now(UTC) - CACHE_FOR:
            return [AppUser.model_validate(u) for u in cached["users"]]
    users = [AppUser(id=str(u.id), name=u.name, email=u.email) for u in await ClioApi(ctx.http).users()]
    await ctx.store.set("users", json.dumps({"at": datetime.now(UTC).isoformat(),
                                             "users": [u.model_dump() for u in users]}))
    return users


@hookimpl
async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    if not email:
        return None
    return next((u for u in await _users(ctx) if (u.email or "").lower() == email.lower()), None)


@hookimpl
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    """The user who authorised the connection (``users/who_am_i``).

    Kept in the host's store for a while: a connection re-authorised by someone
    else is seen within :data:`CACHE_FOR`.
    """
    raw = await ctx.store.get("who_am_i")
    if raw:
        cached = json.loads(raw)
        if datetime.fromisoformat(cached["at"]) > datetime.now(UTC) - CACHE_FOR:
            return AppUser.model_validate(cached["user"])
    me = await ClioApi(ctx.http).who_am_i()
    user = AppUser(id=str(me.id), name=me.name, email=me.email)
    await ctx.store.set("who_am_i", json.dumps({"at": datetime.now(UTC).isoformat(),
                                                "user": user.model_dump()}))
    return user


# --- what the communication says ------------------------------------------------------


def _fmt(e164: str | None) -> str:
    if not e164:
        return "withheld number"
    if not e164.startswith("+"):
        return e164  # a short code
    return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _duration(seconds: int) -> str:
    minutes, secs = divmod(max(seconds, 0), 60)
    return f"{minutes}m {secs:02d}s"


def _who(target: LogTarget, event: CallEvent | SmsEvent | FaxEvent) -> str:
    names = [c.name for c in target.contacts if c.name]
    number = _fmt(event.external.number)
    return f"{names[0]} ({number})" if names else number


def subject(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget) -> str:
    who = _who(target, event)
    inbound = event.direction == Direction.INBOUND
    if isinstance(event, CallEvent):
        if event.outcome in (CallOutcome.MISSED, CallOutcome.VOICEMAIL) and inbound:
            kind = "Voicemail from" if event.outcome == CallOutcome.VOICEMAIL else "Missed call from"
            return f"{kind} {who}"
        return f"{'Inbound call from' if inbound else 'Outbound call to'} {who}"
    if isinstance(event, SmsEvent):
        return f"{'SMS from' if inbound else 'SMS to'} {who}"
    return f"{'Fax from' if inbound else 'Fax to'} {who}"


#: Headings of the parts of a call's body that late details bring (summary,
#: recording, transcript); they follow the notes, and update_log rewrites them.
LATE_HEADINGS = ("Summary:\n", "Recording: ", "Transcript:\n")


def _late_details(event: CallEvent) -> list[str]:
    parts = []
    if event.summary:
        parts.append(f"Summary:\n{event.summary}")
    if event.recording_url:
        parts.append(f"Recording: {event.recording_url}")
    if event.transcript:
        parts.append(f"Transcript:\n{event.transcript}")
    return parts


def body(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget, *, note: str | None = None) -> str:
    """The communication's text: a block of facts, then notes, late details and ``note``,
    each part after a blank line."""
    lines = [f"Direction: {event.direction.value}",
             f"External number: {_fmt(event.external.number)}"]
    if event.internal.number:
        lines.append(f"Firm number: {_fmt(event.internal.number)}")
    if event.internal.extension:
        lines.append(f"Extension: {event.internal.extension}")
    if target.user and target.user.name:
        lines.append(f"Staff: {target.user.name}")
    parts = []
    if isinstance(event, CallEvent):
        lines.append(f"Outcome: {event.outcome.value}")
        lines.append(f"Duration: {_duration(event.duration_seconds)}"
                     + (f" (talk time {_duration(event.talk_seconds)})" if event.answered_at else ""))
        notes = target.notes if target.notes is not None else event.notes
        if notes:
            parts.append(f"Notes:\n{notes}")
        parts += _late_details(event)
    elif isinstance(event, SmsEvent):
        parts.append(event.body)
    else:
        lines.append(f"Pages: {event.page_count}; delivery: {event.outcome.value}")
    if note:
        parts.append(note)
    return "\n\n".join(["\n".join(lines), *parts])


def revised_body(current: str, event: CallEvent) -> str:
    """``current`` (a call's body as logged) with the late details of ``event``.

    The block of facts is kept as written (the staff member named then), and so are
    the notes unless the event now carries its own; summary, recording and
    transcript are written again from the event.
    """
    facts, _, rest = current.partition("\n\n")
    notes = None
    if rest.startswith("Notes:\n"):
        # The notes end where the first late detail begins (or at the end).
        ends = [i for h in LATE_HEADINGS if (i := rest.find("\n\n" + h)) >= 0]
        notes = rest[len("Notes:\n"):min(ends)] if ends else rest[len("Notes:\n"):]
    if event.notes:
        notes = event.notes
    parts = [facts, *([f"Notes:\n{notes}"] if notes else []), *_late_details(event)]
    return "\n\n".join(parts)


def _participants(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget) -> dict[str, Any]:
    contacts = [{"id": int(c.id), "type": "Contact"} for c in target.contacts]
    user = [{"id": int(target.user.id), "type": "User"}] if target.user else []
    if event.direction == Direction.INBOUND:
        return {"senders": contacts, "receivers": user}
    return {"senders": user, "receivers": contacts}


# --- logging ----------------------------------------------------------------------------


async def _remember(ctx: HookContext, kind: str, record_id: object, step: str) -> Record:
    """A record just written (or found) in Clio, kept in the ledger at once so a retry resumes."""
    record = Record(kind=kind, id=str(record_id), step=step)
    if ctx.delivery is not None:
        await ctx.delivery.remember(record)
    return record


def _earlier(ctx: HookContext, kind: str) -> Record | None:
    return find_record(ctx.delivery.records, kind) if ctx.delivery else None


def _retry(ctx: HookContext) -> bool:
    """Whether an earlier attempt of this delivery may have written something."""
    return ctx.delivery is not None and ctx.delivery.attempt > 1


async def _communication(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,
                         target: LogTarget, *, note: str | None = None) -> Record:
    known = _earlier(ctx, "communication")
    if known is not None:
        return known
    api = ClioApi(ctx.http)
    if _retry(ctx):
        existing = await api.communications_marked(event.marker)
        if existing:
            return await _remember(ctx, "communication", existing[0].id, "communication")
    data: dict[str, Any] = {
        "type": "PhoneCommunication", "subject": subject(event, target),
        "body": body(event, target, note=note), "received_at": event.occurred_at.isoformat(),
        "external_properties": [{"name": MARKER, "value": event.marker}],
        **_participants(event, target),
    }
    if target.matter is not None:
        data["matter"] = {"id": int(target.matter.id)}
    created = await api.create_communication(data)
    return await _remember(ctx, "communication", created.id, "communication")


async def _activity_description(ctx: HookContext, name: str) -> int | None:
    """The id of the firm's activity description called ``name``, kept for 15 minutes."""
    key = f"activity_description:{name}"
    raw = await ctx.store.get(key)
    if raw:
        cached = json.loads(raw)
        if datetime.fromisoformat(cached["at"]) > datetime.now(UTC) - CACHE_FOR:
            return cached["id"] if cached["id"] is None else int(cached["id"])
    found = await ClioApi(ctx.http).activity_description_named(name)
    await ctx.store.set(key, json.dumps({"at": datetime.now(UTC).isoformat(), "id": found}))
    return found


async def _time_entry(ctx: HookContext, event: CallEvent, target: LogTarget, comm: Record) -> Record:
    known = _earlier(ctx, "time_entry")
    if known is not None:
        return known
    api = ClioApi(ctx.http)
    if _retry(ctx):
        existing = await api.time_entries_of(int(comm.id))
        if existing:
            return await _remember(ctx, "time_entry", existing[0].id, "time_entry")
    opts = _options(ctx)
    billable = (opts.time_entry_billable if opts.time_entry_billable is not None
                else ctx.settings.default_billable)
    data: dict[str, Any] = {
        "type": "TimeEntry", "date": event.started_at.astimezone(UTC).date().isoformat(),
        "quantity": event.talk_seconds, "communication": {"id": int(comm.id)},
        "non_billable": not billable, "note": opts.time_entry_note,
    }
    if target.matter is not None:
        data["matter"] = {"id": int(target.matter.id)}
    if target.user is not None:
        data["user"] = {"id": int(target.user.id)}
    if opts.activity_description:
        described = await _activity_description(ctx, opts.activity_description)
        if described is not None:
            data["activity_description"] = {"id": described}
    created = await api.create_activity(data)
    return await _remember(ctx, "time_entry", created.id, "time_entry")


@hookimpl
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    comm = await _communication(ctx, event, target)
    records = [comm]
    if event.outcome == CallOutcome.COMPLETED:  # talk time: answered to ended, else the duration
        records.append(await _time_entry(ctx, event, target, comm))
    return LogResult(records=tuple(records))


@hookimpl
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    return LogResult(records=(await _communication(ctx, event, target),))


async def _document_bytes(ctx: HookContext, event: FaxEvent) -> bytes:
    assert event.document is not None
    if event.document.content is not None:
        return bytes(event.document.content)
    r = await ctx.bare_http.get(event.document.url or "")
    return bytes(r.content)


async def _document_parent(ctx: HookContext, target: LogTarget) -> dict[str, Any] | None:
    """Where the fax document goes: the fax folder of the matter, else of the contact."""
    if target.matter is not None:
        parent_id, parent_type = int(target.matter.id), "Matter"
    elif target.contacts:
        parent_id, parent_type = int(target.contacts[0].id), "Contact"
    else:
        return None
    folder_name = _options(ctx).fax_folder
    if not folder_name:
        return {"id": parent_id, "type": parent_type}
    api = ClioApi(ctx.http)
    async with ctx.lock(f"folder:{parent_type}:{parent_id}"):  # one folder, however many faxes
        folder = await api.folder_named(folder_name, parent_type=parent_type, parent_id=parent_id)
        if folder is None:
            folder = await api.create_folder(folder_name, parent_type=parent_type, parent_id=parent_id)
    return {"id": folder.id, "type": "Folder"}


async def _upload(ctx: HookContext, event: FaxEvent, target: LogTarget, comm: Record) -> Record | None:
    """The fax document, created, uploaded and marked complete; None when it has nowhere to go."""
    if find_record(ctx.delivery.records if ctx.delivery else (), "document", "document_uploaded"):
        return find_record(ctx.delivery.records if ctx.delivery else (), "document", "document_uploaded")
    api = ClioApi(ctx.http)
    doc = None
    known = _earlier(ctx, "document")
    if known is not None or _retry(ctx):
        # Unfinished uploads are found too (show_uncompleted).
        found = await api.documents_marked(event.marker)
        doc = found[0] if found else None
    if doc is None:
        parent = await _document_parent(ctx, target)
        if parent is None:
            return None
        assert event.document is not None
        name = event.document.filename or (
            f"Fax {event.direction.value} {event.sent_at.astimezone(UTC):%Y-%m-%d %H%M}"
            f"{'.pdf' if event.document.content_type == 'application/pdf' else '.tiff'}")
        doc = await api.create_document({
            "name": name, "parent": parent, "communication_id": int(comm.id),
            "content_type": event.document.content_type, "received_at": event.sent_at.isoformat(),
            "external_properties": [{"name": MARKER, "value": event.marker}]})
        await _remember(ctx, "document", doc.id, "document")
    version = doc.latest_document_version
    if version is None or (not version.fully_uploaded and version.put_url is None):
        # Nowhere to put the bytes: a failed upload, never a document marked as done.
        raise TransientError("Clio gave the fax document no upload URL")
    if not version.fully_uploaded:
        assert version.put_url is not None
        # A bare client: the storage URL is pre-signed, and our token or headers
        # must never reach it.
        await ctx.bare_http.put(version.put_url, content=await _document_bytes(ctx, event),
                                headers={h.name: h.value for h in version.put_headers})
        await api.mark_uploaded(doc.id, version.uuid)
    return await _remember(ctx, "document", doc.id, "document_uploaded")


@hookimpl
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    comm = await _communication(ctx, event, target)
    if event.document is None:
        return LogResult(records=(comm,), note="document missing")
    try:
        doc = await _upload(ctx, event, target, comm)
    except (AppError, OSError) as exc:
        attempt = ctx.delivery.attempt if ctx.delivery else UPLOAD_ATTEMPTS
        if attempt < UPLOAD_ATTEMPTS and (not isinstance(exc, AppError) or exc.retryable):
            raise TransientError(f"fax upload failed ({type(exc).__name__}); will retry") from exc
        doc = None
    if doc is None:
        why = ("no contact or matter to file it under" if not (target.contacts or target.matter)
               else "the upload failed")
        await ClioApi(ctx.http).update_communication(int(comm.id), {
            "body": body(event, target, note=f"The fax document is missing: {why}.")})
        return LogResult(records=(comm,), note="document missing")
    return LogResult(records=(comm, doc))


@hookimpl
async def update_log(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,
                     records: list[Record]) -> LogResult:
    """Late details (recording, transcript, summary, notes) edit the call's communication
    in place: read its body, rewrite the late details, PATCH it. Never a second log."""
    comm = find_record(tuple(records), "communication")
    if comm is None:
        raise SkipEvent("nothing_to_update", "No Clio communication was written for this event.")
    if not isinstance(event, CallEvent):
        return LogResult(records=tuple(records))  # SMS and faxes have no late details
    api = ClioApi(ctx.http)
    current = await api.communication(int(comm.id))
    await api.update_communication(int(comm.id), {"body": revised_body(current.body or "", event)})
    return LogResult(records=tuple(records))


__all__ = ["ClioSettings", "body", "revised_body", "search_texts", "split_name", "subject"]
