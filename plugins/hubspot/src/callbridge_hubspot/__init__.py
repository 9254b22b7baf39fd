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
from typing import TYPE_CHECKING, Any

from callbridge import hookspecs
from callbridge.capabilities import Capability, Connection, Declaration, OAuth2Config
from callbridge.hookspecs import hookimpl

from callbridge_hubspot import limits
from callbridge_hubspot.settings import (
    OBJECT_KIND,
    SEARCH_SETTLE_SECONDS,
    HubSpotSettings,
    api_for,
    options_of,
    portal_time_zone,
)

if TYPE_CHECKING:
    from callbridge.context import HookContext
    from callbridge.events import CallEvent, ExternalParty, FaxEvent, SmsEvent
    from callbridge.models import AppUser, ChangedContacts, Contact, LogResult, LogTarget, Record

# The modules that write (content, host, writes, contacts, batch) are imported when a hook
# is first called: loading the plugin (``callbridge plugins`` lists it from its declaration)
# does not load the HTTP client, the host's event models or HubSpot's API models.

#: Whether the host calls ``log_batch`` (hook API 2.0).
HOST_HAS_BATCH = hasattr(hookspecs, "log_batch")
#: Helpers re-exported from the module of their concern, imported on first use.
_LAZY = {"split_name": "contacts", "begin": "writes", "find_marked": "writes",
         "marker_property": "writes", "settle": "writes", "written": "writes"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


try:
    __version__ = version("callbridge-hubspot")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

OAUTH_SCOPES = ("crm.objects.contacts.read crm.objects.contacts.write crm.objects.owners.read "
                "crm.schemas.contacts.read files oauth")


def _capabilities() -> frozenset[Capability]:
    caps = {Capability.CALLS, Capability.SMS, Capability.FAX, Capability.CONTACT_SEARCH_PHONE,
            Capability.CONTACT_SEARCH_EMAIL, Capability.CONTACT_CREATION,
            Capability.CONTACTS_CHANGED, Capability.USERS, Capability.LATE_DETAILS,
            Capability.FILE_ATTACHMENTS, Capability.LOG_WITHOUT_CONTACT,
            Capability.MULTI_CONTACT_LINK}
    batch_writes = getattr(Capability, "BATCH_WRITES", None)
    if batch_writes is not None and HOST_HAS_BATCH:
        caps.add(batch_writes)
    return frozenset(caps)


@hookimpl
def declare() -> Declaration:
    data: dict[str, Any] = {
        "name": "hubspot", "title": "HubSpot", "version": __version__,
        "hook_api_version": "2.0" if HOST_HAS_BATCH else "1.0",
        "capabilities": _capabilities(), "settings_model": HubSpotSettings,
        # The plan's buckets come with each connection where the host takes them;
        # declared here: the smallest plan's.
        "rate_limits": limits.buckets(),
    }
    if "batch_size" in Declaration.model_fields:
        data["batch_size"] = 100
    if "consistency_delay" in Declaration.model_fields:
        # HubSpot's search sees a write "a few moments" later: a retry after a lost
        # answer is not scheduled sooner (the plugin also waits out the rest itself).
        data["consistency_delay"] = SEARCH_SETTLE_SECONDS
    if "without_contact" in Declaration.model_fields:
        # Calls, SMS and faxes may all be logged with no contact (unassociated); the
        # deprecated capability only for a host that does not know this field.
        data["without_contact"] = frozenset({"call", "sms", "fax"})
        data["capabilities"] = data["capabilities"] - {Capability.LOG_WITHOUT_CONTACT}
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
        data["rate_limits"] = limits.buckets(opts.plan, opts.api_limit_increases, oauth,
                                             opts.portal_time_zone)
    return Connection.model_validate(data)


# --- contacts and users (:mod:`.contacts`) ------------------------------------------------------


@hookimpl
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    from callbridge_hubspot import contacts

    return await contacts.find_contact(ctx, party)


@hookimpl
async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:
    from callbridge_hubspot import contacts

    return await contacts.create_contact(ctx, party, name)


@hookimpl
async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    from callbridge_hubspot import contacts

    return await contacts.contacts_changed_since(ctx, since, cursor)


@hookimpl
async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    from callbridge_hubspot import contacts

    return await contacts.find_user(ctx, email)


@hookimpl
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    from callbridge_hubspot import contacts

    return await contacts.pick_default_user(ctx)


# --- logging ----------------------------------------------------------------------------------


@hookimpl
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    from callbridge.models import LogResult

    from callbridge_hubspot import content
    from callbridge_hubspot.writes import write_one

    def build(marker: tuple[str, str] | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
        return (content.call_properties(event, target, marker),
                content.associations(target, content.TYPE_TO_CONTACT["calls"]))

    return LogResult(records=(await write_one(ctx, "calls", event, build),))


@hookimpl
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    from callbridge.models import LogResult

    from callbridge_hubspot import content
    from callbridge_hubspot.writes import write_one

    def build(marker: tuple[str, str] | None) -> tuple[dict[str, str], list[dict[str, Any]]]:
        return (content.sms_properties(event, target, marker),
                content.associations(target, content.TYPE_TO_CONTACT["communications"]))

    return LogResult(records=(await write_one(ctx, "communications", event, build),))


def fax_file_name(event: FaxEvent, mark: str) -> str:
    """The uploaded file's name: the time and the marker, found again by name on a retry."""
    ext = ".pdf" if event.document is None or event.document.content_type == "application/pdf" \
        else ".tiff"
    return f"fax-{event.sent_at.astimezone(UTC):%Y%m%d-%H%M%S}-{mark}{ext}"


@hookimpl
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    """A note with the fax document uploaded through the Files API and attached."""
    from callbridge.errors import PermanentError
    from callbridge.models import LogResult

    from callbridge_hubspot import content, host
    from callbridge_hubspot.writes import write_one

    api = await api_for(ctx)
    file_record: Record | None = None
    why_missing: str | None = None
    got = await host.document(ctx, event)
    if got is None:
        why_missing = "no document came with the fax" if event.document is None \
            else "the document could not be fetched"
    else:
        data, content_type, _name = got
        name = fax_file_name(event, host.marker(ctx.delivery, event))

        async def upload() -> str:
            return (await api.upload_file(data, filename=name, content_type=content_type,
                                          folder_path=options_of(ctx).fax_folder)).id

        async def find_file() -> str | None:
            found = await api.files_named(name.rsplit(".", 1)[0])
            return found[0].id if found else None

        try:
            file_record = await host.step(ctx.delivery, "file", "document", create=upload,
                                          find=find_file)
        except PermanentError:
            # HubSpot refused the file (a connection without the files scope, a type it
            # will not hold): the note is still written, and says so.
            why_missing = "HubSpot refused the upload"

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
    from callbridge.context import find_record
    from callbridge.errors import SkipEvent
    from callbridge.events import CallEvent
    from callbridge.models import LogResult

    from callbridge_hubspot import content

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


async def log_batch(ctx: HookContext, kind: str, items: list[Any]) -> list[Any]:
    """Many deliveries of one portal and kind through the batch endpoints (:mod:`.batch`)."""
    from callbridge_hubspot import batch

    return await batch.log_batch(ctx, kind, items)


if HOST_HAS_BATCH:
    log_batch = hookimpl(log_batch)

__all__ = [
    "OBJECT_KIND", "HubSpotSettings", "api_for", "begin", "connection", "contacts_changed_since",
    "create_contact", "declare", "find_contact", "find_marked", "find_user", "hookspecs",
    "log_call", "log_fax", "log_sms", "marker_property", "options_of", "pick_default_user",
    "portal_time_zone", "settle", "split_name", "update_log", "written",
]
