"""Delayed logging (SPEC §4): notes a user takes while a call is in progress.

Notes name the apps they are for and, per app, the contacts the user chose (none:
matching as usual). For those apps the call is not logged automatically: a
*delayed* delivery is written ``delayed_logging_minutes`` after the call ends,
with the notes and the chosen contacts. Until the call ends it is held
(``not_before`` = :data:`~callbridge.modes.store.UNTIL_END`); the ended revision
gives it its time (``next_attempt_at``, state waiting/delay), so the timer lives
in the ledger and a restart loses none.

* Notes carry the time they were started: started before the call's end, they
  count as taken during the call even when they arrive after the ended revision.
  An ended call seen in progress waits ``modes.notes_grace_seconds`` before its
  automatic log, for them; an automatic delivery not yet begun becomes the
  delayed one (one statement: a worker that claimed it first wins, and the notes
  become a late detail). Never both an automatic and a delayed log.
* Cancelled before the call ends: the delayed deliveries, never tried, are
  dropped, and the call logs automatically as usual. Cancelled after it ended:
  still delayed, with what automatic logging would have written.
* Notes started after the end, or arriving once the log is written: a late
  detail (a revision of the event carrying them; the log is updated in place).
* A revision of the call carrying notes while it is in progress selects delayed
  logging for every app that logs the tenant's calls automatically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, TypeAdapter, ValidationError

from callbridge.events import AnyEvent, CallEvent, dump_event, parse_event
from callbridge.eventtext import Text
from callbridge.ledger import FINAL_OK, Stored
from callbridge.modes import store
from callbridge.modes.refs import ManualRefused, check_app, check_contacts, find_event

if TYPE_CHECKING:
    from callbridge.engine import Engine
    from callbridge.settings import Settings

__all__ = ["add_notes", "cancel_notes", "hold_until", "on_stored"]

#: The longest notes taken (characters): an event's ``notes`` hold twice as many.
MAX_NOTES = 10_000
_TEXT = TypeAdapter(Annotated[Text, Field(min_length=1, max_length=MAX_NOTES)])
_CANCELLED = "notes-cancelled:{}"


def hold_until(engine: Engine, event: AnyEvent,
               config: Settings | None = None) -> datetime | None:
    """When an ended call's automatic deliveries may first be claimed (the grace period
    for notes started during the call), or None (``config``: the settings just read)."""
    if not (isinstance(event, CallEvent) and event.is_final and event.ended_at is not None):
        return None
    grace = timedelta(seconds=(config or engine.config).modes.notes_grace_seconds)
    now = engine.clock.now()
    until = min(now + grace, max(now, event.ended_at + grace))
    return until if until > now else None


def _due(engine: Engine, event: CallEvent, app: str) -> datetime | None:
    """When the delayed log to ``app`` is written (None while the call is in progress)."""
    if not event.is_final or event.ended_at is None:
        return None
    minutes = engine.config.tenant(event.tenant).apps[app].delayed_logging_minutes
    return event.ended_at + timedelta(minutes=minutes)


async def add_notes(engine: Engine, event_ref: str, apps: Mapping[str, Sequence[str]], text: str,
                    started_at: datetime, *, tenant: str | None = None) -> dict[str, str]:
    """Notes taken on a call: delayed logging for ``apps`` (app -> chosen contact ids).

    Returns, per app, ``"delayed"`` or ``"late_detail"``. Raises :class:`ManualRefused`.
    """
    if not apps:
        raise ManualRefused("name at least one app", field="apps", status=422)
    try:
        text = _TEXT.validate_python(text)
    except ValidationError:
        raise ManualRefused(f"must be text of 1 to {MAX_NOTES} characters, without control "
                            "characters", field="notes", status=422) from None
    if started_at.tzinfo is None:
        raise ManualRefused("must carry its UTC offset", field="started_at", status=422)
    pk, event = await find_event(engine, event_ref, tenant=tenant)
    if not isinstance(event, CallEvent):
        raise ManualRefused("notes select delayed logging for calls only", status=422)
    rows = await engine.db(store.delivery_rows, engine.ledger, pk, engine.clock.now())
    chosen: dict[str, list[str] | None] = {}
    for app, ids in apps.items():
        check_app(engine, event, app)
        if ids:
            view = (await engine.db(engine.ledger.delivery, rows[app].delivery_id)
                    if app in rows else None)
            chosen[app] = [c.id for c in await check_contacts(
                engine, event, app, list(ids), view.candidates if view else ())]
        else:
            chosen[app] = None
    await engine.db(engine.ledger.kv_delete, event.tenant, "", _CANCELLED.format(pk))
    during = event.ended_at is None or started_at <= event.ended_at
    done: dict[str, str] = {}
    for app in apps:
        result = "too_late"
        if during:
            result = await engine.db(store.set_delayed, engine.ledger, pk, app,
                                     now=engine.clock.now(), due=_due(engine, event, app),
                                     notes=text, chosen=chosen[app], convert_automatic=True)
        done[app] = "late_detail" if result == "too_late" else "delayed"
    if "late_detail" in done.values():
        await _late_detail(engine, event, text)
    return done


async def cancel_notes(engine: Engine, event_ref: str, *, tenant: str | None = None) -> int:
    """Cancel a call's notes: before it ends, automatic logging as usual; after, still
    delayed, with the automatic content. Returns how many deliveries changed."""
    pk, event = await find_event(engine, event_ref, tenant=tenant)
    if not isinstance(event, CallEvent):
        raise ManualRefused("notes select delayed logging for calls only", status=422)
    now = engine.clock.now()
    await engine.db(engine.ledger.kv_set, event.tenant, "", _CANCELLED.format(pk),
                    json.dumps({"at": now.isoformat()}))
    dropped = await engine.db(store.drop_plans, engine.ledger, pk, now)
    cleared = await engine.db(store.clear_notes, engine.ledger, pk, now)
    return dropped + cleared


async def on_stored(engine: Engine, given: AnyEvent, stored: Stored) -> None:
    """After a revision is stored: notes it carries while in progress select delayed
    logging; an ended call's held delayed deliveries get their time."""
    event = stored.event
    if not isinstance(given, CallEvent) or not isinstance(event, CallEvent):
        return
    if not given.is_final and given.notes:
        await _from_revision(engine, stored.event_pk, event)
    if event.is_final and stored.status == "revision":
        await release(engine, stored.event_pk, event)


async def release(engine: Engine, event_pk: int, event: CallEvent) -> int:
    """The call has ended: its held delayed deliveries fall due after their delay."""
    tenant = engine.config.tenants.get(event.tenant)
    if tenant is None:
        return 0
    due = {app: at for app in tenant.apps if (at := _due(engine, event, app)) is not None}
    return await engine.db(store.release_held, engine.ledger, event_pk, due, engine.clock.now())


async def _from_revision(engine: Engine, pk: int, event: CallEvent) -> None:
    if await engine.db(engine.ledger.kv_get, event.tenant, "", _CANCELLED.format(pk)):
        return  # the user cancelled the notes: the phone system's copy does not undo that
    tenant = engine.config.tenants.get(event.tenant)
    if tenant is None:
        return
    rows = await engine.db(store.delivery_rows, engine.ledger, pk, engine.clock.now())
    for app in engine.apps_for(tenant):
        row = rows.get(app)
        if row is not None and (row.mode == "delayed" or row.status in FINAL_OK):
            continue  # the user's own notes, or already written (the notes are a late detail)
        # The event carries the notes itself: the delayed log writes them from it.
        await engine.db(store.set_delayed, engine.ledger, pk, app, now=engine.clock.now(),
                        due=_due(engine, event, app), notes=None, chosen=None,
                        convert_automatic=True)


async def _late_detail(engine: Engine, event: CallEvent, text: str) -> None:
    """Notes that came too late for the log: a revision of the event carrying them, so
    a written log is updated in place (where the app takes updates)."""
    if event.notes and text in event.notes:
        return
    notes = text if not event.notes else f"{event.notes}\n\n{text}"
    data = json.loads(dump_event(event))
    data["notes"] = notes[:2 * MAX_NOTES]
    await engine.intake.store(parse_event(data))
