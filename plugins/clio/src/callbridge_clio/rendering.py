"""What a communication says: its subject, its body, and the body revised by late details."""

from __future__ import annotations

from typing import Any

import phonenumbers
from callbridge.events import CallEvent, CallOutcome, Direction, FaxEvent, SmsEvent
from callbridge.models import LogTarget


def _fmt(e164: str | None) -> str:
    if not e164:
        return "withheld number"
    if not e164.startswith("+"):
        return e164  # a short code
    return phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _duration(seconds: int) -> str:
    minutes, secs = divmod(max(seconds, 0), 60)
    return f"{minutes}m {secs:02d}s"


def _who(target: LogTarget, event: CallEvent | SmsEvent | FaxEvent) -> str:
    names = [c.name for c in target.contacts if c.name]
    number = _fmt(event.external.number)
    return f"{names[0]} ({number})" if names else number


def subject(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget) -> str:
    who = _who(target, event)
    inbound = event.direction == Direction.INBOUND
    if isinstance(event, CallEvent):
        if event.outcome in (CallOutcome.MISSED, CallOutcome.VOICEMAIL) and inbound:
            kind = "Voicemail from" if event.outcome == CallOutcome.VOICEMAIL else "Missed call from"
            return f"{kind} {who}"
        return f"{'Inbound call from' if inbound else 'Outbound call to'} {who}"
    if isinstance(event, SmsEvent):
        return f"{'SMS from' if inbound else 'SMS to'} {who}"
    return f"{'Fax from' if inbound else 'Fax to'} {who}"


#: Headings of the parts of a call's body that late details bring (summary,
#: recording, transcript); they follow the notes, and update_log rewrites them.
LATE_HEADINGS = ("Summary:\n", "Recording: ", "Transcript:\n")


def _late_details(event: CallEvent) -> list[str]:
    parts = []
    if event.summary:
        parts.append(f"Summary:\n{event.summary}")
    if event.recording_url:
        parts.append(f"Recording: {event.recording_url}")
    if event.transcript:
        parts.append(f"Transcript:\n{event.transcript}")
    return parts


def body(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget, *, note: str | None = None) -> str:
    """The communication's text: a block of facts, then notes, late details and ``note``,
    each part after a blank line."""
    lines = [f"Direction: {event.direction.value}",
             f"External number: {_fmt(event.external.number)}"]
    if event.internal.number:
        lines.append(f"Firm number: {_fmt(event.internal.number)}")
    if event.internal.extension:
        lines.append(f"Extension: {event.internal.extension}")
    if target.user and target.user.name:
        lines.append(f"Staff: {target.user.name}")
    parts = []
    if isinstance(event, CallEvent):
        lines.append(f"Outcome: {event.outcome.value if event.outcome else event.state}")
        lines.append(f"Duration: {_duration(event.duration_seconds)}"
                     + (f" (talk time {_duration(event.talk_seconds)})" if event.answered_at else ""))
        notes = target.notes if target.notes is not None else event.notes
        if notes:
            parts.append(f"Notes:\n{notes}")
        parts += _late_details(event)
    elif isinstance(event, SmsEvent):
        parts.append(event.body)
    else:
        lines.append(f"Pages: {event.page_count}; delivery: {event.outcome.value}")
    if note:
        parts.append(note)
    return "\n\n".join(["\n".join(lines), *parts])


def revised_body(current: str, event: CallEvent) -> str:
    """``current`` (a call's body as logged) with the late details of ``event``.

    The block of facts is kept as written (the staff member named then), and so are
    the notes unless the event now carries its own; summary, recording and
    transcript are written again from the event.
    """
    facts, _, rest = current.partition("\n\n")
    notes = None
    if rest.startswith("Notes:\n"):
        # The notes end where the first late detail begins (or at the end).
        ends = [i for h in LATE_HEADINGS if (i := rest.find("\n\n" + h)) >= 0]
        notes = rest[len("Notes:\n"):min(ends)] if ends else rest[len("Notes:\n"):]
    if event.notes:
        notes = event.notes
    parts = [facts, *([f"Notes:\n{notes}"] if notes else []), *_late_details(event)]
    return "\n\n".join(parts)


def participants(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget) -> dict[str, Any]:
    contacts = [{"id": int(c.id), "type": "Contact"} for c in target.contacts]
    user = [{"id": int(target.user.id), "type": "User"}] if target.user else []
    if event.direction == Direction.INBOUND:
        return {"senders": contacts, "receivers": user}
    return {"senders": user, "receivers": contacts}
