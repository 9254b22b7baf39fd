"""The HubSpot plugin: calls, SMS and faxes into HubSpot's CRM (API v3).

What is written (docs/plugins/hubspot.md has the details and the reasons):

* a call: a call engagement associated with the contact (type 194), or with no
  record when there is no contact; an SMS: a communication of channel SMS
  (type 81); a fax: a note (type 202) with the document uploaded through the
  Files API and attached.
* every record carries the event's marker in a call/communication/note property
  the plugin creates (``callbridge_event`` by default); a retry after an uncertain
  write searches for it, after waiting for HubSpot's search to catch up.
* many calls for one portal go through the batch create endpoint (:mod:`.batch`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from callbridge import hookspecs
from callbridge.capabilities import Capability, Connection, Declaration, OAuth2Config
from callbridge.context import HookContext, find_record
from callbridge.errors import AppError, PermanentError, SkipEvent
from callbridge.events import CallEvent, ExternalParty, FaxEvent, SmsEvent
from callbridge.hookspecs import hookimpl
from callbridge.models import AppUser, ChangedContacts, Contact, LogResult, LogTarget, Record
from callbridge.phones import national_digits, search_forms, try_e164
from pydantic import BaseModel, ConfigDict, Field, field_validator

from callbridge_hubspot import batch, content, host, limits
from callbridge_hubspot.api import CONTACT_PROPERTIES, HubSpotApi, HubSpotObject

try:
    __version__ = version("callbridge-hubspot")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

API_BASE = "https://api.hubapi.com"
OAUTH_SCOPES = ("crm.objects.contacts.read crm.objects.contacts.write crm.objects.owners.read "
                "crm.schemas.contacts.read files oauth")
#: The record kinds the plugin writes, by HubSpot object type.
OBJECT_KIND = {"calls": "call", "communications": "communication", "notes": "note"}


class HubSpotSettings(BaseModel):
    """The plugin's options (``[tenants.X.apps.hubspot.options]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: Literal["private_app", "oauth"] = Field(
        default="private_app", description="a private app's access token, or OAuth 2.0")
    plan: limits.Plan = Field(default="starter", description="the portal's plan: sets the burst limit")
    api_limit_increases: int = Field(default=0, ge=0, le=2, description="API limit increase add-ons")
    api_base_url: str | None = Field(default=None, description="override the API base (a sandbox)")
    portal_time_zone: str | None = Field(
        default=None, description="IANA zone for the daily reset; none: read from the account")
    marker_property: str = Field(default="callbridge_event", pattern=r"^[a-z][a-z0-9_]{0,99}$")
    search_settle_seconds: float = Field(
        default=10.0, ge=0, le=600,
        description="wait this long after an uncertain write before searching for it")
    owners_cache_minutes: float = Field(default=15.0, gt=0)
    default_owner_email: str | None = Field(
        default=None, description="the owner of logs whose staff member matches no owner")
    fax_folder: str = Field(default="/callbridge/faxes", pattern=r"^/[^\\]{0,200}$")

    @field_validator("portal_time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError("not a known IANA time zone") from None
        return value

    @property
    def base_url(self) -> str:
        return (self.api_base_url or API_BASE).rstrip("/")


def options_of(ctx: HookContext) -> HubSpotSettings:
    return ctx.options if isinstance(ctx.options, HubSpotSettings) else HubSpotSettings()


def _capabilities() -> frozenset[Capability]:
    caps = {Capability.CALLS, Capability.SMS, Capability.FAX, Capability.CONTACT_SEARCH_PHONE,
            Capability.CONTACT_SEARCH_EMAIL, Capability.CONTACT_CREATION,
            Capability.CONTACTS_CHANGED, Capability.USERS, Capability.LATE_DETAILS,
            Capability.FILE_ATTACHMENTS, Capability.LOG_WITHOUT_CONTACT,
            Capability.MULTI_CONTACT_LINK}
    batch_writes = getattr(Capability, "BATCH_WRITES", None)
    if batch_writes is not None and batch.HOST_HAS_BATCH:
        caps.add(batch_writes)
    return frozenset(caps)


@hookimpl
def declare() -> Declaration:
    data: dict[str, Any] = {
        "name": "hubspot", "title": "HubSpot", "version": __version__,
        "hook_api_version": "2.0" if batch.HOST_HAS_BATCH else "1.0",
        "capabilities": _capabilities(), "settings_model": HubSpotSettings,
        # The plan's buckets come with each connection where the host takes them;
        # declared here: the smallest plan's.
        "rate_limits": limits.buckets(),
    }
    if "batch_size" in Declaration.model_fields:
        data["batch_size"] = 100
    return Declaration.model_validate(data)


@hookimpl
def connection(options: HubSpotSettings | None) -> Connection:
    opts = options or HubSpotSettings()
    oauth = opts.auth == "oauth"
    data: dict[str, Any] = {"base_url": opts.base_url, "auth": "oauth2" if oauth else "bearer"}
    if oauth:
        app = "https://app.hubspot.com" if opts.api_base_url is None else opts.base_url
        data["oauth2"] = OAuth2Config(authorize_url=f"{app}/oauth/authorize",
                                      token_url=f"{opts.base_url}/oauth/v1/token",
                                      scope=OAUTH_SCOPES)
    if "rate_limits" in Connection.model_fields:
        data["rate_limits"] = limits.buckets(opts.plan, opts.api_limit_increases, oauth)
    return Connection.model_validate(data)


# --- the API client with the portal's daily state ------------------------------------------

DAILY_KEY = "daily_limit"


async def portal_time_zone(ctx: HookContext, api: HubSpotApi) -> str:
    """The portal's time zone: the setting, else the account's (cached a day)."""
    opts = options_of(ctx)
    if opts.portal_time_zone:
        return opts.portal_time_zone

    async def load() -> str:
        return (await api.account_details()).time_zone

    try:
        zone = str(await host.cached(ctx, "portal_time_zone", load, ttl=86400))
        ZoneInfo(zone)
        return zone
    except (AppError, ZoneInfoNotFoundError, ValueError):
        ctx.log.warning("the portal's time zone could not be read; the daily reset is taken "
                        "at midnight UTC")
        return "UTC"


async def api_for(ctx: HookContext) -> HubSpotApi:
    clock = host.clock(ctx)
    daily = limits.DailyState.load(await ctx.store.get(DAILY_KEY))

    async def keep(state: limits.DailyState) -> None:
        await ctx.store.set(DAILY_KEY, state.dump())

    api: HubSpotApi

    async def midnight() -> datetime:
        return limits.next_midnight(clock.now(), await portal_time_zone(ctx, api))

    api = HubSpotApi(ctx.http, daily, midnight=midnight, now=clock.now, on_exhausted=keep)
    return api


# --- contacts -------------------------------------------------------------------------------


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

    record = await host.step(ctx.delivery, "contact", "create_contact", create=create, find=find)
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


# --- the marker and uncertain writes ----------------------------------------------------------


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


async def settle(ctx: HookContext, key: str) -> None:
    """Wait until HubSpot's search has had ``search_settle_seconds`` since the write."""
    raw = await ctx.store.get(f"write:{key}")
    clock = host.clock(ctx)
    began = datetime.fromisoformat(raw) if raw else (
        ctx.delivery.first_attempt_at if ctx.delivery is not None else clock.now())
    left = options_of(ctx).search_settle_seconds - (clock.now() - began).total_seconds()
    if left > 0:
        await clock.sleep(left)


async def find_marked(api: HubSpotApi, object_type: str, prop: str | None,
                      markers: list[str]) -> dict[str, str]:
    """marker -> record id of the records already carrying these markers."""
    if prop is None or not markers:
        return {}
    page = await api.search(object_type, [{"filters": [
        {"propertyName": prop, "operator": "IN", "values": markers}]}],
        properties=[prop], limit=min(200, max(10, len(markers) * 2)))
    out: dict[str, str] = {}
    for obj in sorted(page.results, key=lambda o: (len(o.id), o.id)):
        value = obj.prop(prop)
        if value and value not in out:
            out[value] = obj.id
    return out


# --- logging ----------------------------------------------------------------------------------


async def write_one(ctx: HookContext, object_type: str, event: CallEvent | SmsEvent | FaxEvent,
                    build: Any) -> Record:
    """One record through the host's write protocol, carrying the event's marker."""
    api = await api_for(ctx)
    kind = OBJECT_KIND[object_type]
    prop = await marker_property(ctx, api, object_type)
    key = f"{kind}:{event.marker}"

    async def create() -> str:
        await begin(ctx, key)
        props, assoc = build((prop, event.marker) if prop else None)
        return (await api.create(object_type, props, assoc)).id

    async def find() -> str | None:
        await settle(ctx, key)
        return (await find_marked(api, object_type, prop, [event.marker])).get(event.marker)

    return await host.step(ctx.delivery, kind, "log", create=create, find=find)


@hookimpl
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    def build(marker: tuple[str, str] | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
        return (content.call_properties(event, target, marker),
                content.associations(target, content.TYPE_TO_CONTACT["calls"]))

    return LogResult(records=(await write_one(ctx, "calls", event, build),))


@hookimpl
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    def build(marker: tuple[str, str] | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
        return (content.sms_properties(event, target, marker),
                content.associations(target, content.TYPE_TO_CONTACT["communications"]))

    return LogResult(records=(await write_one(ctx, "communications", event, build),))


def fax_file_name(event: FaxEvent) -> str:
    """The uploaded file's name: the time and the marker, found again by name on a retry."""
    ext = ".pdf" if event.document is None or event.document.content_type == "application/pdf" \
        else ".tiff"
    return f"fax-{event.sent_at.astimezone(UTC):%Y%m%d-%H%M%S}-{event.marker}{ext}"


@hookimpl
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    """A note with the fax document uploaded through the Files API and attached."""
    api = await api_for(ctx)
    file_record: Record | None = None
    why_missing: str | None = None
    got = await host.document(ctx, event)
    if got is None:
        why_missing = "no document came with the fax" if event.document is None \
            else "the document could not be fetched"
    else:
        data, content_type, _name = got
        name = fax_file_name(event)

        async def upload() -> str:
            return (await api.upload_file(data, filename=name, content_type=content_type,
                                          folder_path=options_of(ctx).fax_folder)).id

        async def find_file() -> str | None:
            found = await api.files_named(name.rsplit(".", 1)[0])
            return found[0].id if found else None

        file_record = await host.step(ctx.delivery, "file", "document", create=upload,
                                      find=find_file)

    def build(marker: tuple[str, str] | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
        return (content.fax_note_properties(event, target, marker,
                                            file_record.id if file_record else None, why_missing),
                content.associations(target, content.TYPE_TO_CONTACT["notes"]))

    note = await write_one(ctx, "notes", event, build)
    if file_record is None:
        return host.result((note,), missing=("document",))
    return LogResult(records=(note, file_record))


@hookimpl
async def update_log(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,
                     records: list[Record]) -> LogResult:
    """Late details edit the call in place (body and recording URL). Never a second log."""
    call = find_record(tuple(records), "call")
    if call is None:
        if find_record(tuple(records), "communication") or find_record(tuple(records), "note"):
            return LogResult(records=tuple(records))  # SMS and faxes have no late details
        raise SkipEvent("nothing_to_update", "No HubSpot call was written for this event.")
    if not isinstance(event, CallEvent):
        return LogResult(records=tuple(records))
    api = await api_for(ctx)
    current = await api.read("calls", call.id, ["hs_call_body"])
    props = {"hs_call_body": content.revised_body(current.prop("hs_call_body") or "", event)}
    if event.recording_url and event.recording_url.startswith("https://"):
        props["hs_call_recording_url"] = event.recording_url
    await api.update("calls", call.id, props)
    return LogResult(records=tuple(records))


if batch.HOST_HAS_BATCH:
    log_batch = hookimpl(batch.log_batch)

__all__ = ["HubSpotSettings", "declare", "hookspecs", "split_name"]
