"""The notebook plugin: logs calls, SMS and faxes into the notebook server.

A complete, small plugin written only against the public hook API, used by
the host's tests, the benchmark and the demo. Each call waits a random
``delay_ms`` first, like a slow app.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import Literal

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
from pydantic import BaseModel, Field

__version__ = "0.1.0"


class NotebookSettings(BaseModel):
    """The notebook plugin's options."""

    model_config = {"extra": "forbid"}

    base_url: str = "http://127.0.0.1:8765"
    delay_ms: tuple[int, int] = Field(default=(0, 0), description="random wait before each call")
    requests_per_second: float = Field(default=1000.0, gt=0)
    auth: Literal["none", "bearer"] = Field(
        default="none", description="bearer: send the token from {credentials_env}_TOKEN")


@hookimpl
def declare() -> Declaration:
    return Declaration(
        name="notebook", title="Notebook", version=__version__, hook_api_version="1.0",
        capabilities=frozenset({
            Capability.CALLS, Capability.SMS, Capability.FAX, Capability.CONTACT_SEARCH_PHONE,
            Capability.CONTACT_SEARCH_EMAIL, Capability.CONTACT_CREATION, Capability.MATTERS,
            Capability.USERS, Capability.LATE_DETAILS, Capability.CONTACTS_CHANGED,
            Capability.LOG_WITHOUT_CONTACT, Capability.MULTI_CONTACT_LINK,
        }),
        settings_model=NotebookSettings,
        rate_limits=(RateBucket(name="api", requests=1000, per_seconds=1.0, scope="tenant"),),
    )


@hookimpl
def connection(options: NotebookSettings) -> Connection:
    return Connection(base_url=options.base_url, auth=options.auth)


async def _pause(ctx: HookContext) -> None:
    low, high = ctx.options.delay_ms if isinstance(ctx.options, NotebookSettings) else (0, 0)
    if high > 0:
        await asyncio.sleep(random.uniform(low, high) / 1000)


def _contact(raw: dict[str, object]) -> Contact:
    return Contact(id=str(raw["id"]), name=str(raw.get("name") or "") or None,
                   phones=tuple(raw.get("phones") or ()),  # type: ignore[arg-type]
                   emails=tuple(raw.get("emails") or ()),  # type: ignore[arg-type]
                   updated_at=datetime.fromisoformat(str(raw["updated_at"])))


@hookimpl
async def find_contact(ctx: HookContext, party: ExternalParty) -> list[Contact]:
    await _pause(ctx)
    found: dict[str, Contact] = {}
    if party.e164:
        r = await ctx.http.get("/contacts", params={"phone": party.e164})
        found.update({c["id"]: _contact(c) for c in r.json()["data"]})
    if party.email:
        r = await ctx.http.get("/contacts", params={"email": party.email})
        found.update({c["id"]: _contact(c) for c in r.json()["data"]})
    return list(found.values())


@hookimpl
async def create_contact(ctx: HookContext, party: ExternalParty, name: str) -> Contact:
    await _pause(ctx)
    # The notebook takes no marker on contacts: look for one created since the first
    # attempt with this number before creating again.
    if ctx.delivery is not None and ctx.delivery.attempt > 1 and party.e164:
        r = await ctx.http.get("/contacts", params={"phone": party.e164})
        since = ctx.delivery.first_attempt_at
        for raw in r.json()["data"]:
            contact = _contact(raw)
            if contact.updated_at and contact.updated_at >= since:
                return contact
    r = await ctx.http.post("/contacts", json={"name": name, "phones": [party.e164]})
    return _contact(r.json())


@hookimpl
async def find_matters(ctx: HookContext, contact: Contact) -> list[Matter]:
    await _pause(ctx)
    r = await ctx.http.get(f"/contacts/{contact.id}/matters")
    return [Matter(id=m["id"], name=m["name"], status=m["status"]) for m in r.json()["data"]]


@hookimpl
async def find_user(ctx: HookContext, email: str | None) -> AppUser | None:
    if not email:
        return None
    r = await ctx.http.get("/users", params={"email": email})
    users = r.json()["data"]
    return AppUser(id=users[0]["id"], name=users[0]["name"], email=users[0]["email"]) if users else None


@hookimpl
async def pick_default_user(ctx: HookContext) -> AppUser | None:
    """The first user by name (case-insensitive), ties by id."""
    r = await ctx.http.get("/users")
    users = r.json()["data"]
    return AppUser(id=users[0]["id"], name=users[0]["name"], email=users[0]["email"]) if users else None


async def _log(ctx: HookContext, kind: str, event: CallEvent | SmsEvent | FaxEvent,
               target: LogTarget, detail: dict[str, object]) -> LogResult:
    await _pause(ctx)
    earlier = find_record(ctx.delivery.records, "log") if ctx.delivery else None
    if earlier is not None:
        return LogResult(records=(earlier,))
    existing = (await ctx.http.get("/logs", params={"marker": event.marker})).json()["data"]
    if existing:
        record = Record(kind="log", id=existing[0]["id"])
    else:
        body = {"marker": event.marker, "kind": kind, "direction": event.direction.value,
                "contact_ids": [c.id for c in target.contacts],
                "matter_id": target.matter.id if target.matter else None,
                "user_id": target.user.id if target.user else None, **detail}
        r = await ctx.http.post("/logs", json=body)
        record = Record(kind="log", id=r.json()["id"])
    if ctx.delivery is not None:
        await ctx.delivery.remember(record)
    return LogResult(records=(record,))


@hookimpl
async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    return await _log(ctx, "call", event, target, {
        "outcome": event.outcome.value, "seconds": event.duration_seconds,
        "notes": target.notes or event.notes, "recording_url": event.recording_url})


@hookimpl
async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    return await _log(ctx, "sms", event, target, {"body": event.body})


@hookimpl
async def log_fax(ctx: HookContext, event: FaxEvent, target: LogTarget) -> LogResult:
    return await _log(ctx, "fax", event, target, {"pages": event.page_count})


@hookimpl
async def update_log(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,
                     records: list[Record]) -> LogResult:
    log = find_record(tuple(records), "log")
    if log is None:
        return LogResult(records=tuple(records))
    detail = {"recording_url": getattr(event, "recording_url", None),
              "transcript": getattr(event, "transcript", None)}
    await ctx.http.patch(f"/logs/{log.id}", json=detail)
    return LogResult(records=tuple(records))


@hookimpl
async def contacts_changed_since(ctx: HookContext, since: datetime | None,
                                 cursor: str | None) -> ChangedContacts:
    params = {"limit": "100"}
    if since is not None:
        params["updated_since"] = since.isoformat()
    if cursor:
        params["cursor"] = cursor
    r = await ctx.http.get("/contacts", params=params)
    body = r.json()
    return ChangedContacts(contacts=tuple(_contact(c) for c in body["data"]), cursor=body["next"])
