"""The Smokeball plugin: calls, SMS and faxes into Smokeball.

What is written (docs/plugins/smokeball.md has the details and the reasons):

* a call with exactly one matter: a Fee (time) on it with the activity code, the
  talk time in billed minutes; otherwise a Task assigned to the matched staff
  member or the default user;
* an SMS with exactly one matter: a Memo on it; otherwise a Task;
* a fax with a contact and exactly one matter: the file, uploaded to the matter's
  documents through the pre-signed upload; otherwise skipped with the reason.

Smokeball writes asynchronously: every create is answered 202 with the record's
id, and the outcome is *accepted* until a confirmation read finds the record.
Every record carries the event's marker (``externalSystemId`` on contacts, the
file's additional data, else a last line of its text) and is looked up by it
before a retry creates it again.
"""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from callbridge import hookspecs
from callbridge.capabilities import Capability, Connection, Declaration, OAuth2Config, RateBucket
from callbridge.hookspecs import hookimpl

from callbridge_smokeball.settings import HOSTS, SmokeballSettings

if TYPE_CHECKING:
    from callbridge.context import HookContext
    from callbridge.events import CallEvent, ExternalParty, FaxEvent, SmsEvent
    from callbridge.models import (
        AppRequest,
        AppSubscription,
        AppUser,
        ChangedContacts,
        Contact,
        LogResult,
        LogTarget,
        Matter,
        MatterChanged,
        Record,
        WriteConfirmed,
        WriteFailed,
    )

# The hooks' modules (logs, lookups, webhooks) are imported when a hook is first called:
# loading the plugin (``callbridge plugins`` lists it from its declaration) does not load
# the HTTP client, the host's event models or Smokeball's API models.

try:
    __version__ = version("callbridge-smokeball")
except PackageNotFoundError:  # pragma: no cover
    __version__ = "0.0.0"

#: Smokeball's default limit per partner: a token bucket of 5 per second, burst 5, shared
#: by every firm the deployment serves.
RATE_LIMIT = RateBucket(name="api", requests=5, per_seconds=1.0, burst=5, scope="partner")
#: Seconds after an accepted write before Smokeball's lists are taken to show it: a retry after
#: a lost answer waits this long, so the lookup by marker sees the first write.
CONSISTENCY_DELAY = 120.0
_ASYNC_WRITES = getattr(Capability, "ASYNC_WRITES", None)
#: App events (hook API 2.1): Smokeball's webhooks confirm or fail accepted writes.
_APP_EVENTS = getattr(Capability, "APP_EVENTS", None) \
    if hasattr(hookspecs, "subscribe_app_events") else None


@hookimpl
def declare() -> Declaration:
    caps = {
        Capability.CALLS, Capability.SMS, Capability.FAX, Capability.CONTACT_SEARCH_PHONE,
        Capability.CONTACT_SEARCH_EMAIL, Capability.CONTACT_CREATION, Capability.CONTACTS_CHANGED,
        Capability.MATTERS, Capability.ACTIVITY_CODES, Capability.USERS, Capability.LATE_DETAILS,
        Capability.FILE_ATTACHMENTS,
    }
    if _ASYNC_WRITES is not None and hasattr(hookspecs, "confirm_accepted"):
        caps.add(_ASYNC_WRITES)
    if _APP_EVENTS is not None:
        caps.add(_APP_EVENTS)
    extra: dict[str, object] = {}
    if "without_contact" in Declaration.model_fields:
        # A call or an SMS with no contact is still a Task; a fax needs a contact's matter.
        extra["without_contact"] = frozenset({"call", "sms"})
    if "consistency_delay" in Declaration.model_fields:
        extra["consistency_delay"] = CONSISTENCY_DELAY
    return Declaration(
        name="smokeball", title="Smokeball", version=__version__,
        hook_api_version=hookspecs_version(), capabilities=frozenset(caps),
        settings_model=SmokeballSettings, rate_limits=(RATE_LIMIT,), **extra)


def hookspecs_version() -> str:
    """The hook API this plugin is built for: 2.1 (app events) or 2.0 where the host
    offers it, else 1.0."""
    from callbridge import HOOK_API_VERSION

    if not HOOK_API_VERSION.startswith("2."):
        return "1.0"
    return "2.1" if _APP_EVENTS is not None else "2.0"


@hookimpl
def connection(options: SmokeballSettings | None) -> Connection:
    """OAuth 2.0 against the region's Cognito host, ``x-api-key`` beside the bearer token;
    under client credentials the account id first in the path and the acting user's
    ``UserId`` header."""
    opts = options or SmokeballSettings()
    headers: dict[str, str] = {}
    if opts.grant == "client_credentials" and opts.acting_user_id:
        headers["UserId"] = opts.acting_user_id
    oauth: dict[str, object] = {
        "authorize_url": f"{opts.auth_url}/oauth2/authorize",
        "token_url": f"{opts.auth_url}/oauth2/token"}
    if "grant" in OAuth2Config.model_fields:
        oauth["grant"] = opts.grant
    if "client_auth" in OAuth2Config.model_fields:
        oauth["client_auth"] = "basic"
    extra: dict[str, object] = {}
    if "send_api_key" in Connection.model_fields:
        extra["send_api_key"] = True
    return Connection(base_url=opts.base_url, auth="oauth2", api_key_header="x-api-key",
                      headers=headers, oauth2=OAuth2Config.model_validate(oauth), **extra)


@hookimpl
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    from callbridge_smokeball import lookups

    return await lookups.find_contact(ctx, party)


@hookimpl
async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:
    from callbridge_smokeball import lookups

    return await lookups.create_contact(ctx, party, name)


@hookimpl
async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    from callbridge_smokeball import lookups

    return await lookups.contacts_changed_since(ctx, since, cursor)


@hookimpl
async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:
    from callbridge_smokeball import lookups

    return await lookups.find_matters(ctx, contact)


@hookimpl
async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    from callbridge_smokeball import lookups

    return await lookups.find_user(ctx, email)


@hookimpl
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    from callbridge_smokeball import lookups

    return await lookups.pick_default_user(ctx)


@hookimpl
async def ensure_activity_code(ctx: HookContext, label: str) -> str:
    from callbridge_smokeball import lookups

    return await lookups.ensure_activity_code(ctx, label)


@hookimpl
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    from callbridge_smokeball import logs

    return await logs.log_call(ctx, event, target)


@hookimpl
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    from callbridge_smokeball import logs

    return await logs.log_sms(ctx, event, target)


@hookimpl
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    from callbridge_smokeball import logs

    return await logs.log_fax(ctx, event, target)


@hookimpl
async def update_log(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,
                     records: list[Record]) -> LogResult:
    from callbridge_smokeball import logs

    return await logs.update_log(ctx, event, records)


async def confirm_accepted(ctx: HookContext, records: list[Record], since: datetime
                           ) -> dict[str, bool | None]:
    from callbridge_smokeball import logs

    return await logs.confirm_accepted(ctx, records, since)


if hasattr(hookspecs, "confirm_accepted"):  # hook API 2.0
    confirm_accepted = hookimpl(confirm_accepted)


async def subscribe_app_events(ctx: HookContext, url: str) -> AppSubscription:
    from callbridge_smokeball import webhooks

    return await webhooks.subscribe(ctx, url)


async def renew_app_events(ctx: HookContext, subscription: AppSubscription,
                           url: str) -> AppSubscription:
    from callbridge_smokeball import webhooks

    return await webhooks.renew(ctx, subscription, url)


async def verify_app_event(ctx: HookContext, request: AppRequest,
                           subscription: AppSubscription) -> None:
    from callbridge_smokeball import webhooks

    webhooks.verify_request(ctx, request, subscription)


async def parse_app_event(ctx: HookContext, request: AppRequest, subscription: AppSubscription
                          ) -> list[WriteConfirmed | WriteFailed | MatterChanged]:
    from callbridge_smokeball import webhooks

    return webhooks.parse(request)


if _APP_EVENTS is not None:  # hook API 2.1
    subscribe_app_events = hookimpl(subscribe_app_events)
    renew_app_events = hookimpl(renew_app_events)
    verify_app_event = hookimpl(verify_app_event)
    parse_app_event = hookimpl(parse_app_event)

__all__ = ["HOSTS", "RATE_LIMIT", "SmokeballSettings"]
