"""What the plugin writes: subjects, texts, billed minutes, the marker line."""

from __future__ import annotations

import math
from datetime import date
from zoneinfo import ZoneInfo

import phonenumbers
from callbridge.events import CallEvent, CallOutcome, Direction, FaxEvent, SmsEvent
from callbridge.models import LogTarget

AnyEvent = CallEvent | SmsEvent | FaxEvent
#: The line that carries the event's marker at the end of every text the plugin writes.
MARKER_PREFIX = "callbridge ref: "
#: Headings of the parts late details bring; update_log rewrites them.
LATE_HEADINGS = ("Summary:\n", "Recording: ", "Transcript:\n")


def fmt(number: str | None) -> str:
    if not number:
        return "withheld number"
    if not number.startswith("+"):
        return number  # a short code
    parsed = phonenumbers.parse(number)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def minutes_and_seconds(seconds: int) -> str:
    minutes, secs = divmod(max(seconds, 0), 60)
    return f"{minutes}m {secs:02d}s"


def answered(event: CallEvent) -> bool:
    return event.answered_at is not None and event.outcome == CallOutcome.COMPLETED


def talk_seconds(event: CallEvent) -> int:
    """Answered to ended; zero for a call that was not answered."""
    return max(event.talk_seconds, 0) if answered(event) else 0


def worked_minutes(event: CallEvent) -> int:
    """Talk time in whole minutes, rounded up (4m 12s is 5); zero when not answered."""
    return math.ceil(talk_seconds(event) / 60)


def billed_minutes(event: CallEvent, unit: int) -> int:
    """Talk time rounded up to the firm's billing unit (4m 12s in 6-minute units is 6).

    A call that was not answered, or answered with no talk time, bills zero: never
    rounded up to a unit.
    """
    seconds = talk_seconds(event)
    return math.ceil(seconds / (unit * 60)) * unit if seconds > 0 else 0


def iso_duration(seconds: int) -> str:
    """ISO 8601, as Smokeball's task ``duration`` takes it (``PT4M12S``)."""
    minutes, secs = divmod(max(seconds, 0), 60)
    hours, minutes = divmod(minutes, 60)
    return "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") \
        + f"{secs}S"


def local_date(event: AnyEvent, time_zone: str) -> date:
    return event.occurred_at.astimezone(ZoneInfo(time_zone)).date()


def who(event: AnyEvent, target: LogTarget) -> str:
    names = [c.name for c in target.contacts if c.name]
    number = fmt(event.external.number)
    return f"{names[0]} ({number})" if names else number


def subject(event: AnyEvent, target: LogTarget) -> str:
    party = who(event, target)
    inbound = event.direction == Direction.INBOUND
    if isinstance(event, CallEvent):
        if inbound and event.outcome == CallOutcome.VOICEMAIL:
            return f"Voicemail from {party}"
        if inbound and event.outcome == CallOutcome.MISSED:
            return f"Missed call from {party}"
        return f"{'Call from' if inbound else 'Call to'} {party}"
    if isinstance(event, SmsEvent):
        return f"{'SMS from' if inbound else 'SMS to'} {party}"
    return f"{'Fax from' if inbound else 'Fax to'} {party}"


def _late_details(event: CallEvent) -> list[str]:
    parts = []
    if event.summary:
        parts.append(f"Summary:\n{event.summary}")
    if event.recording_url:
        parts.append(f"Recording: {event.recording_url}")
    if event.transcript:
        parts.append(f"Transcript:\n{event.transcript}")
    return parts


def text(event: AnyEvent, target: LogTarget, marker: str) -> str:
    """A record's text: facts, then notes, late details, and the marker line last."""
    lines = [f"Direction: {event.direction.value}",
             f"External number: {fmt(event.external.number)}"]
    if event.internal.number:
        lines.append(f"Firm number: {fmt(event.internal.number)}")
    if event.internal.extension:
        lines.append(f"Extension: {event.internal.extension}")
    if target.user and target.user.name:
        lines.append(f"Staff: {target.user.name}")
    parts: list[str] = []
    if isinstance(event, CallEvent):
        lines.append(f"Outcome: {event.outcome.value if event.outcome else event.state}")
        lines.append(f"Duration: {minutes_and_seconds(event.duration_seconds)}"
                     + (f" (talk time {minutes_and_seconds(talk_seconds(event))})"
                        if answered(event) else ""))
        notes = target.notes if target.notes is not None else event.notes
        if notes:
            parts.append(f"Notes:\n{notes}")
        parts += _late_details(event)
    elif isinstance(event, SmsEvent):
        parts.append(event.body)
    else:
        lines.append(f"Pages: {event.page_count}")
    return "\n\n".join(["\n".join(lines), *parts, MARKER_PREFIX + marker])


def revised_text(current: str, event: CallEvent, marker: str) -> str:
    """``current`` (a call's text as written) with the late details of ``event``.

    The facts are kept as written, and the notes unless the event now has its own;
    summary, recording and transcript are written again; the marker line stays last.
    """
    marker = kept_marker(current) or marker
    body = current.split("\n\n" + MARKER_PREFIX)[0]
    if body.startswith(MARKER_PREFIX):
        body = ""
    facts, _, rest = body.partition("\n\n")
    notes = None
    if rest.startswith("Notes:\n"):
        ends = [i for h in LATE_HEADINGS if (i := rest.find("\n\n" + h)) >= 0]
        notes = rest[len("Notes:\n"):min(ends)] if ends else rest[len("Notes:\n"):]
    if event.notes:
        notes = event.notes
    parts = [facts, *([f"Notes:\n{notes}"] if notes else []), *_late_details(event)]
    return "\n\n".join([*parts, MARKER_PREFIX + marker])


def carries(text_value: str | None, marker: str) -> bool:
    """Whether a record's text ends with (or holds) this event's marker line."""
    return bool(text_value) and (MARKER_PREFIX + marker) in (text_value or "")


def kept_marker(current: str) -> str | None:
    """The marker a written text already carries (kept as written on an update)."""
    if MARKER_PREFIX not in current:
        return None
    return current.rsplit(MARKER_PREFIX, 1)[1].strip().split()[0] or None


def revised_message(current: str, event: SmsEvent, marker: str) -> str:
    """An SMS's text as written, with the message of its newest revision."""
    marker = kept_marker(current) or marker
    facts = current.split("\n\n")[0] if current and not current.startswith(MARKER_PREFIX) else ""
    return "\n\n".join([p for p in (facts, event.body) if p] + [MARKER_PREFIX + marker])
