"""Manual logging (SPEC §4): a user logs an event to one app, choosing the contact
where matching was ambiguous (which resolves an *unresolved* event).

Refused, with a reason a user can act on (:class:`ManualRefused`), when the app
already has the event, when the event's call has not ended, or when the chosen
contact is neither one of the event's candidates nor confirmed by the app's own
contact search. Otherwise the event's delivery to the app is made due now (or
made, for an app that does not log automatically), with the chosen contact, and
worked at once; the log names the contact as an automatic log would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callbridge.ledger import FINAL_OK
from callbridge.models import Outcome, OutcomeStatus
from callbridge.modes import store
from callbridge.modes.refs import ManualRefused, check_app, check_contacts, find_event

if TYPE_CHECKING:
    from callbridge.engine import Engine

__all__ = ["ManualRefused", "log_manually", "outcome_of"]


async def log_manually(engine: Engine, event_ref: str, app: str, contact_id: str | None,
                       *, tenant: str | None = None, work: bool = True) -> Outcome:
    """Log the event ``event_ref`` (the source's id or the ledger's) to ``app`` now.

    ``contact_id``: the contact to log to (required for an unresolved event: one of
    its candidates, or a contact the app's search for the event's party returns).
    ``tenant`` limits the events ``event_ref`` may name (an operator's firm).
    ``work``: run the delivery before returning (else the worker picks it up).
    Returns the delivery's outcome; raises :class:`ManualRefused`.
    """
    pk, event = await find_event(engine, event_ref, tenant=tenant)
    check_app(engine, event, app)
    if not event.is_final:
        raise ManualRefused("the call has not ended yet; add notes to it instead (delayed "
                            "logging), or log it once it has ended")
    now = engine.clock.now()
    row = (await engine.db(store.delivery_rows, engine.ledger, pk, now)).get(app)
    if row is not None and row.status in FINAL_OK:
        raise ManualRefused(f"the event is already logged in {app}; it is not logged twice",
                            field="app")
    if row is not None and row.leased:
        raise ManualRefused(f"the event is being logged in {app} right now", field="app")
    view = None if row is None else await engine.db(engine.ledger.delivery, row.delivery_id)
    candidates = view.candidates if view is not None else ()
    if contact_id is None and row is not None and row.status == "unresolved":
        raise ManualRefused("several contacts match this event; choose one of its candidates",
                            field="contact", status=422)
    chosen = None
    if contact_id is not None:
        chosen = [c.id for c in await check_contacts(engine, event, app, [contact_id],
                                                     candidates)]
    if row is None:
        did = await engine.db(store.add, engine.ledger, pk, app, mode="manual", now=now,
                              chosen=chosen)
    else:
        did = row.delivery_id
        if not await engine.db(store.reopen, engine.ledger, did, now=now, mode="manual",
                               chosen=chosen):
            raise ManualRefused(f"the event was logged in {app}, or is being logged, meanwhile",
                                field="app")
    if work:
        await engine.process_due(event_pks=[pk], apps=[app])
    return await outcome_of(engine, did)


async def outcome_of(engine: Engine, delivery_id: int) -> Outcome:
    """A delivery's current outcome, as the ledger holds it."""
    view = await engine.db(engine.ledger.delivery, delivery_id)
    return Outcome(status=OutcomeStatus(view.status), reason=view.reason, message=view.message,
                   records=view.records, next_attempt_at=view.next_attempt_at,
                   candidates=view.candidates)
