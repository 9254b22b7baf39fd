"""The plugin's hook implementations: each one line into the module of its concern.

Each concern's module is imported when its hook is first called: loading the plugin
(``callbridge plugins`` lists it from its declaration) does not load the HTTP
client, the host's event models or Clio's API models.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from callbridge.capabilities import Connection, Declaration
from callbridge.hookspecs import hookimpl

from callbridge_clio import settings

if TYPE_CHECKING:
    from callbridge.context import HookContext
    from callbridge.events import CallEvent, ExternalParty, FaxEvent, SmsEvent
    from callbridge.models import (
        AppRequest,
        AppSubscription,
        AppUser,
        ChangedContacts,
        ClosedMatterPage,
        Contact,
        LogResult,
        LogTarget,
        Matter,
        MatterChanged,
        Record,
    )


@hookimpl
def declare() -> Declaration:
    return settings.declaration()


@hookimpl
def connection(options: settings.ClioSettings | None) -> Connection:
    return settings.connection(options)


@hookimpl
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    from callbridge_clio import contacts

    return await contacts.find_contact(ctx, party)


@hookimpl
async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:
    from callbridge_clio import contacts

    return await contacts.create_contact(ctx, party, name)


@hookimpl
async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    from callbridge_clio import contacts

    return await contacts.contacts_changed_since(ctx, since, cursor)


@hookimpl
async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:
    from callbridge_clio import matters

    return await matters.find_matters(ctx, contact)


@hookimpl
async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    from callbridge_clio import users

    return await users.find_user(ctx, email)


@hookimpl
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    from callbridge_clio import users

    return await users.pick_default_user(ctx)


@hookimpl
async def ensure_activity_code(ctx: HookContext, label: str) -> str:
    from callbridge_clio import records as written

    return await written.ensure_activity_code(ctx, label)


@hookimpl
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    from callbridge_clio import records as written

    return await written.log_call(ctx, event, target)


@hookimpl
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    from callbridge_clio import records as written

    return await written.log_sms(ctx, event, target)


@hookimpl
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    from callbridge_clio import documents

    return await documents.log_fax(ctx, event, target)


@hookimpl
async def update_log(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,
                     records: list[Record]) -> LogResult:
    from callbridge_clio import records as written

    return await written.update_log(ctx, event, records)


@hookimpl
async def closed_matters_since(ctx: HookContext, position: str | None, since: datetime,
                               contact_fields: list[str],
                               matter_fields: list[str]) -> ClosedMatterPage:
    from callbridge_clio import closed

    return await closed.closed_matters_since(ctx, position, since, contact_fields, matter_fields)


@hookimpl
async def subscribe_app_events(ctx: HookContext, url: str) -> AppSubscription:
    from callbridge_clio import webhooks

    return await webhooks.subscribe(ctx, url)


@hookimpl
async def renew_app_events(ctx: HookContext, subscription: AppSubscription,
                           url: str) -> AppSubscription:
    from callbridge_clio import webhooks

    return await webhooks.renew(ctx, subscription, url)


@hookimpl
async def verify_app_event(request: AppRequest, subscription: AppSubscription) -> None:
    from callbridge_clio import webhooks

    webhooks.verify(request, subscription)


@hookimpl
async def parse_app_event(request: AppRequest, subscription: AppSubscription
                          ) -> list[MatterChanged]:
    from callbridge_clio import webhooks

    return webhooks.parse(request)
