"""What the call-history page shows: a firm's recent events, each with its outcome per app
and why, read from the ledger.

Everything here is read-only and synchronous (run it through the engine's ledger
executor). The texts are the host's own words; outside text (names, notes, an app's
error message) is returned as is and escaped by the templates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from callbridge.events import AnyEvent, CallEvent, CallState, Direction, FaxEvent, SmsEvent
from callbridge.ledger import FINAL_OK, ContentErased, DeliveryView
from callbridge.ledger import tables as t
from callbridge.models import Contact, Record
from callbridge.render import duration_text, number_text

if TYPE_CHECKING:
    from callbridge.ledger import Ledger

#: How many events one page shows at most.
PAGE_SIZE = 50

#: Each delivery state as a user reads it (SPEC §2.6).
STATUS_LABELS: Mapping[str, str] = {
    "pending": "Queued",
    "waiting": "Waiting",
    "parked": "On hold",
    "logged": "Logged",
    "accepted": "Sent, awaiting the app's confirmation",
    "skipped": "Not logged",
    "unresolved": "Needs a contact",
    "failed": "Failed",
    "dead": "Gave up",
    "none": "Not logged",
    "later": "Not yet",
}

#: Why, for a state and reason the delivery's own message does not explain.
REASONS: Mapping[tuple[str, str | None], str] = {
    ("pending", None): "Waiting for the worker to log it.",
    ("waiting", "rate_limit"): "The app asked us to slow down; it is logged when the app "
                               "has room (not counted as a failure).",
    ("waiting", "delay"): "Notes were added during the call: it is logged with them once "
                          "the call has ended and the app's delay has passed.",
    ("waiting", "backoff"): "The last attempt failed; it is retried.",
    ("parked", "reauthorise"): "The app's connection must be authorised again; it is logged "
                               "once it is reconnected.",
    ("parked", "daily_limit"): "The app's daily limit is spent; it is logged when the limit "
                               "resets.",
    ("parked", "config_error"): "A setting is missing or wrong; it is logged once the "
                                "settings are fixed.",
    ("unresolved", "several_contacts"): "Several contacts match the number: choose one.",
    ("accepted", None): "The app took the log and confirms it later.",
    ("dead", None): "Retried until the deadline without success.",
    ("logged", None): "Written in the app.",
    ("none", None): "This app does not log this firm's events automatically: log it by hand.",
    ("none", "missing"): "No log was planned in this app (it was connected after the event?): "
                         "log it by hand.",
    ("later", None): "Logged automatically once the call has ended.",
    ("later", "manual"): "This app does not log this firm's events automatically: log it by "
                         "hand once the call has ended.",
}


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status)


def why(status: str, reason: str | None, message: str | None) -> str:
    """One or two sentences on why a delivery is where it is: the delivery's own message
    where it has one (and, for a delivery still to be tried, what happens next)."""
    known = REASONS.get((status, reason)) or REASONS.get((status, None))
    if message and status not in ("waiting", "parked", "pending"):
        known = None
    parts = [p for p in (known, message) if p]
    if not parts and reason:
        parts.append(reason.replace("_", " ").capitalize() + ".")
    return " ".join(parts)


@dataclass(frozen=True)
class AppOutcome:
    """One app's outcome for an event (``status`` ``none``: no delivery to it, ``later``:
    none yet, the event not being final)."""

    app: str
    status: str
    reason: str | None
    why: str
    records: tuple[Record, ...] = ()
    candidates: tuple[Contact, ...] = ()
    mode: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    notes: str | None = None
    """The user's notes kept for the delayed log."""

    @property
    def label(self) -> str:
        return status_label(self.status)

    def next_at(self, zone: str) -> str | None:
        """When it is next tried (a waiting, parked or accepted delivery), in ``zone``."""
        if self.next_attempt_at is None or self.status not in ("waiting", "parked", "accepted"):
            return None
        return f"{self.next_attempt_at.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}"

    @property
    def done(self) -> bool:
        """Logged (or accepted) already: a manual log is refused."""
        return self.status in FINAL_OK

    @property
    def unresolved(self) -> bool:
        return self.status == "unresolved"

    @property
    def delayed(self) -> bool:
        """Delayed logging with the user's notes, not written yet."""
        return self.mode == "delayed" and self.notes is not None and not self.done


@dataclass(frozen=True)
class EventRow:
    """One event as the page shows it."""

    pk: int
    kind: str
    source: str
    occurred_at: datetime
    event: AnyEvent | None
    """None once the event's contents are erased."""
    outcomes: tuple[AppOutcome, ...]

    @property
    def ref(self) -> str:
        """How the actions name the event: the ledger's id."""
        return f"#{self.pk}"

    @property
    def kind_label(self) -> str:
        return {"call": "Call", "sms": "SMS", "fax": "Fax"}.get(self.kind, self.kind)

    @property
    def inbound(self) -> bool:
        return self.event is not None and self.event.direction == Direction.INBOUND

    @property
    def party(self) -> str:
        """Who the firm spoke with: the caller-ID name and number."""
        if self.event is None:
            return "(erased)"
        ext = self.event.external
        number = number_text(ext.number)
        name = ext.display_name
        return f"{name} ({number})" if name else number

    @property
    def title(self) -> str:
        if self.event is None:
            return f"{self.kind_label} (contents erased)"
        way = "from" if self.inbound else "to"
        noun = {"call": "Inbound call" if self.inbound else "Outbound call",
                "sms": "SMS", "fax": "Fax"}.get(self.kind, self.kind_label)
        if self.kind == "call":
            return f"{noun} {'from' if self.inbound else 'to'} {self.party}"
        return f"{noun} {way} {self.party}"

    @property
    def in_progress(self) -> bool:
        """A call not ended yet: notes may be added (delayed logging)."""
        return isinstance(self.event, CallEvent) and self.event.state != CallState.ENDED

    @property
    def final(self) -> bool:
        return self.event is not None and self.event.is_final

    @property
    def state(self) -> str:
        """The call's state, or an SMS's or fax's, in words."""
        ev = self.event
        if isinstance(ev, CallEvent):
            if ev.state == CallState.RINGING:
                return "Ringing"
            if ev.state == CallState.IN_PROGRESS:
                return "In progress"
            outcome = ev.outcome.value.replace("_", " ") if ev.outcome else "ended"
            return f"{outcome.capitalize()}, {duration_text(ev.duration_seconds)}"
        if isinstance(ev, SmsEvent | FaxEvent):
            status = ev.status.value if ev.status else ("received" if self.inbound else "sent")
            pages = f", {ev.page_count} page{'s' if ev.page_count != 1 else ''}" \
                if isinstance(ev, FaxEvent) else ""
            return status.capitalize() + pages
        return ""

    @property
    def text(self) -> str | None:
        """An SMS's body, a call's notes (what the phone system sent)."""
        ev = self.event
        if isinstance(ev, SmsEvent):
            return ev.body
        if isinstance(ev, CallEvent):
            return ev.notes
        return None

    @property
    def delayed(self) -> bool:
        """Notes were added: logged after the call, with them (for some app)."""
        return any(o.delayed for o in self.outcomes)

    @property
    def notes(self) -> str | None:
        """The user's notes for the delayed log, if any."""
        return next((o.notes for o in self.outcomes if o.delayed), None)

    @property
    def needs_attention(self) -> bool:
        return any(o.status in ("unresolved", "failed", "dead", "parked") for o in self.outcomes)

    def staff(self, extensions: Mapping[str, str]) -> str:
        """The firm's staff member on the event: email, and extension where known."""
        if self.event is None:
            return "not known"
        user = self.event.internal
        email = user.email or (extensions.get(user.extension) if user.extension else None)
        ext = f"extension {user.extension}" if user.extension else None
        if email and ext:
            return f"{email} ({ext})"
        return email or ext or "not known"

    def outcome(self, app: str) -> AppOutcome | None:
        return next((o for o in self.outcomes if o.app == app), None)

    def when(self, zone: str) -> str:
        return f"{self.occurred_at.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M}"


def _outcome(view: DeliveryView, notes: str | None) -> AppOutcome:
    return AppOutcome(app=view.app, status=view.status, reason=view.reason,
                      why=why(view.status, view.reason, view.message), records=view.records,
                      candidates=view.candidates, mode=view.mode, attempts=view.attempts,
                      next_attempt_at=view.next_attempt_at, notes=notes)


def _not_delivered(app: str, automatic: bool, final: bool) -> AppOutcome:
    status = "none" if final else "later"
    reason = (None if not automatic else "missing") if final else (None if automatic else "manual")
    return AppOutcome(app=app, status=status, reason=reason, why=why(status, reason, None))


def _rows(ledger: Ledger, found: Sequence[Any], apps: Mapping[str, bool]) -> list[EventRow]:
    pks = [r.id for r in found]
    views = ledger.history(event_pks=pks, limit=len(found) * max(len(apps), 1) + 1000)
    d = t.deliveries
    with ledger._read() as conn:
        noted = {(r.event_id, r.app): ledger._cipher.decrypt(r.notes_enc) for r in conn.execute(
            sa.select(d.c.event_id, d.c.app, d.c.notes_enc).where(
                d.c.event_id.in_(pks), d.c.notes_enc.is_not(None)))}
    by_event: dict[int, dict[str, DeliveryView]] = {}
    for view in views:
        by_event.setdefault(view.event_pk, {})[view.app] = view
    rows = []
    for r in found:
        try:
            event: AnyEvent | None = ledger.load_event(r.id)
        except ContentErased:
            event = None
        have = by_event.get(r.id, {})
        final = event is not None and event.is_final
        names = list(apps) + sorted(set(have) - set(apps))
        outcomes = tuple(_outcome(have[a], noted.get((r.id, a))) if a in have
                         else _not_delivered(a, apps.get(a, False), final) for a in names)
        rows.append(EventRow(pk=r.id, kind=r.kind, source=r.source, occurred_at=r.occurred_at,
                             event=event, outcomes=outcomes))
    return rows


def recent_events(ledger: Ledger, tenant: str, apps: Mapping[str, bool], *,
                  limit: int = PAGE_SIZE, before: int | None = None) -> list[EventRow]:
    """The tenant's events, newest first (``before``: only those older than that event).

    ``apps``: the tenant's apps, each with whether it logs automatically."""
    e = t.events
    query = (sa.select(e.c.id, e.c.kind, e.c.source, e.c.occurred_at)
             .where(e.c.tenant == tenant)
             .order_by(e.c.occurred_at.desc(), e.c.id.desc()).limit(limit))
    with ledger._read() as conn:
        if before is not None:
            mark = conn.execute(sa.select(e.c.occurred_at).where(
                e.c.id == before, e.c.tenant == tenant)).scalar()
            if mark is not None:
                query = query.where(sa.or_(e.c.occurred_at < mark, sa.and_(
                    e.c.occurred_at == mark, e.c.id < before)))
        found = conn.execute(query).all()
    return _rows(ledger, found, apps)


def one_event(ledger: Ledger, tenant: str, pk: int,
              apps: Mapping[str, bool]) -> EventRow | None:
    """The tenant's event ``pk``; None if the tenant has no such event."""
    e = t.events
    with ledger._read() as conn:
        found = conn.execute(sa.select(e.c.id, e.c.kind, e.c.source, e.c.occurred_at)
                             .where(e.c.id == pk, e.c.tenant == tenant)).all()
    return _rows(ledger, found, apps)[0] if found else None
