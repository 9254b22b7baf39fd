"""The notebook plugin: a complete plugin (hook API 2.0) for the app in :mod:`.sandbox`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from callbridge.capabilities import Capability, Connection, Declaration, RateBucket
from callbridge.context import HookContext, find_record
from callbridge.events import CallEvent, ExternalParty, FaxEvent, SmsEvent
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

__version__ = "0.2.0"
AnyEvent = CallEvent | SmsEvent | FaxEvent


class NotebookSettings(BaseModel):  # an app's ``options`` table in the settings
    model_config = ConfigDict(extra="forbid")
    base_url: str = "http://127.0.0.1:8765"
    auth: Literal["none", "bearer"] = "none"  # bearer: the token from {credentials_env}_TOKEN


@hookimpl
def declare() -> Declaration:
    return Declaration(
        name="notebook", title="Notebook", version=__version__, hook_api_version="2.0",
        capabilities=frozenset({
            Capability.CALLS, Capability.SMS, Capability.FAX, Capability.CONTACT_SEARCH_PHONE,
            Capability.CONTACT_SEARCH_EMAIL, Capability.CONTACT_CREATION, Capability.MATTERS,
            Capability.USERS, Capability.LATE_DETAILS, Capability.CONTACTS_CHANGED,
            Capability.MULTI_CONTACT_LINK}),
        settings_model=NotebookSettings, without_contact=frozenset({"call", "sms", "fax"}),
        rate_limits=(RateBucket(name="api", requests=1000, per_seconds=1.0, scope="tenant"),),
    )


@hookimpl
def connection(options: NotebookSettings) -> Connection:
    return Connection(base_url=options.base_url, auth=options.auth)


def _contact(raw: dict[str, Any]) -> Contact:
    return Contact(id=raw["id"], name=raw.get("name") or None, phones=tuple(raw["phones"]),
                   emails=tuple(raw["emails"]), updated_at=datetime.fromisoformat(raw["updated_at"]))


async def _first_user(ctx: HookContext, **params: str) -> AppUser | None:
    users = (await ctx.http.get("/users", params=params)).json()["data"]
    return AppUser(**{k: users[0][k] for k in ("id", "name", "email")}) if users else None


@hookimpl
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    found: dict[str, Contact] = {}
    for key, value in (("phone", party.e164), ("email", party.email)):
        if value:
            r = await ctx.http.get("/contacts", params={key: value})
            found.update({c["id"]: _contact(c) for c in r.json()["data"]})
    return list(found.values())


@hookimpl
async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:
    if ctx.delivery is not None and ctx.delivery.attempt > 1:  # an answer lost? look first
        since = ctx.delivery.first_attempt_at
        for contact in await find_contact(ctx, party):
            if contact.updated_at and contact.updated_at >= since:
                return contact
    r = await ctx.http.post("/contacts", json={"name": name, "phones": [party.e164]})
    return _contact(r.json())


@hookimpl
async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:
    matters = (await ctx.http.get(f"/contacts/{contact.id}/matters")).json()["data"]
    return [Matter(id=m["id"], name=m["name"], status=m["status"]) for m in matters]


@hookimpl
async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    return await _first_user(ctx, email=email) if email else None


@hookimpl
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    return await _first_user(ctx)  # the notebook lists users by name, then id


async def _log(ctx: HookContext, event: AnyEvent, target: LogTarget,
               detail: dict[str, Any]) -> LogResult:
    assert ctx.delivery is not None  # log hooks always have one
    marker = ctx.delivery.marker or event.marker

    async def create() -> str:
        return str((await ctx.http.post("/logs", json={
            "marker": marker, "kind": event.kind, "direction": event.direction.value, **detail,
            "contact_ids": [c.id for c in target.contacts], "matter_id": target.matter and target.matter.id,
            "user_id": target.user and target.user.id})).json()["id"])

    async def find() -> str | None:  # the host runs it only after an answer may have been lost
        found = (await ctx.http.get("/logs", params={"marker": marker})).json()["data"]
        return str(found[0]["id"]) if found else None

    return LogResult(records=(await ctx.delivery.step("log", "log", create=create, find=find),))


@hookimpl
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    return await _log(ctx, event, target, {
        "outcome": event.outcome, "seconds": event.duration_seconds,
        "notes": target.notes or event.notes, "recording_url": event.recording_url})


@hookimpl
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    return await _log(ctx, event, target, {"body": event.body})


@hookimpl
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    return await _log(ctx, event, target, {"pages": event.page_count})


@hookimpl
async def update_log(ctx: HookContext, event: AnyEvent, records: list[Record]) -> LogResult:
    log = find_record(tuple(records), "log")
    if log is not None and isinstance(event, CallEvent):
        await ctx.http.patch(f"/logs/{log.id}", json={"recording_url": event.recording_url,
                                                      "transcript": event.transcript})
    return LogResult(records=tuple(records))


@hookimpl
async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    params = {"limit": "100", "cursor": cursor or "0"} | ({"updated_since": since.isoformat()} if since else {})
    body = (await ctx.http.get("/contacts", params=params)).json()
    return ChangedContacts(contacts=tuple(map(_contact, body["data"])), cursor=body["next"])
