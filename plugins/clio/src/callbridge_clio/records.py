"""What a log writes: the communication, and the time entry of a completed call.

Each write is one step of the host's write protocol (:func:`callbridge_clio.compat.step`):
a communication is found again by the event's marker in its ``external_properties``, a
time entry through its communication.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from callbridge.context import HookContext, find_record
from callbridge.errors import PermanentError, SkipEvent, UnknownActivityCode
from callbridge.events import CallEvent, CallOutcome, FaxEvent, SmsEvent
from callbridge.models import LogResult, LogTarget, Record

from callbridge_clio.api import MARKER, ClioApi
from callbridge_clio.compat import cached, step
from callbridge_clio.rendering import body, participants, revised_body, subject
from callbridge_clio.settings import CACHE_FOR, options


async def communication(ctx: HookContext, event: CallEvent | SmsEvent | FaxEvent,
                        target: LogTarget, *, note: str | None = None) -> Record:
    api = ClioApi(ctx.http)

    async def find() -> str | None:
        existing = await api.communications_marked(event.marker)
        return str(existing[0].id) if existing else None

    async def create() -> str:
        data: dict[str, Any] = {
            "type": "PhoneCommunication", "subject": subject(event, target),
            "body": body(event, target, note=note), "received_at": event.occurred_at.isoformat(),
            "external_properties": [{"name": MARKER, "value": event.marker}],
            **participants(event, target),
        }
        if target.matter is not None:
            data["matter"] = {"id": int(target.matter.id)}
        return str((await api.create_communication(data)).id)

    return await step(ctx, "communication", "communication", create=create, find=find)


async def activity_description(ctx: HookContext, name: str) -> int | None:
    """The id of the firm's activity description called ``name`` (cached)."""
    async def load() -> int | None:
        return await ClioApi(ctx.http).activity_description_named(name)
    found = await cached(ctx, f"activity_description:{name}", load, ttl=CACHE_FOR)
    return None if found is None else int(found)


async def ensure_activity_code(ctx: HookContext, label: str) -> str:
    """The activity description called ``label`` that marks callbridge's time entries:
    found by name, created only when missing, under the ledger lock (never two)."""
    api = ClioApi(ctx.http)
    async with ctx.lock("activity_code"):
        found = await api.activity_description_named(label)
        if found is None:
            found = await api.create_activity_description(label)
    return str(found)


def entry_date(event: CallEvent, time_zone: str) -> str:
    """The call's date where the firm is (a call at 9 pm in New York is that day's, not
    the next day's as in UTC)."""
    return event.started_at.astimezone(ZoneInfo(time_zone)).date().isoformat()


async def time_entry(ctx: HookContext, event: CallEvent, target: LogTarget, comm: Record) -> Record:
    api = ClioApi(ctx.http)

    async def find() -> str | None:
        existing = await api.time_entries_of(int(comm.id))
        return str(existing[0].id) if existing else None

    async def create() -> str:
        opts = options(ctx)
        billable = (opts.time_entry_billable if opts.time_entry_billable is not None
                    else ctx.settings.default_billable)
        data: dict[str, Any] = {
            "type": "TimeEntry", "date": entry_date(event, ctx.tenant.time_zone),
            "quantity": event.talk_seconds, "communication": {"id": int(comm.id)},
            "non_billable": not billable, "note": opts.time_entry_note,
        }
        if target.matter is not None:
            data["matter"] = {"id": int(target.matter.id)}
        if target.user is not None:
            data["user"] = {"id": int(target.user.id)}
        code = target.activity_code
        if opts.activity_description:  # the firm's own choice, by name, comes first
            described = await activity_description(ctx, opts.activity_description)
            code = str(described) if described is not None else code
        if code is not None:
            data["activity_description"] = {"id": int(code)}
        try:
            return str((await api.create_activity(data)).id)
        except PermanentError as exc:
            if code is not None and code == target.activity_code \
                    and "activity_description" in str(exc).lower().replace(" ", "_"):
                raise UnknownActivityCode("Clio no longer knows the activity description "
                                          "callbridge's time entries use") from exc
            raise

    return await step(ctx, "time_entry", "time_entry", create=create, find=find)


async def log_call(ctx: HookContext, event: CallEvent, target: LogTarget) -> LogResult:
    comm = await communication(ctx, event, target)
    records = [comm]
    if event.outcome == CallOutcome.COMPLETED:  # talk time: answered to ended, else the duration
        records.append(await time_entry(ctx, event, target, comm))
    return LogResult(records=tuple(records))


async def log_sms(ctx: HookContext, event: SmsEvent, target: LogTarget) -> LogResult:
    return LogResult(records=(await communication(ctx, event, target),))


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



