"""The standard words of a log: a subject line, a block of facts, notes and late details.

Every app's log of a call says much the same things (who, which way, how it
ended, how long, the notes, and the recording, summary and transcript that may
arrive later), so the host writes them once. A plugin uses what fits its app:

* :func:`subject` — "Inbound call from Ann Lee (+1 212-555-0142)", "SMS to …";
* :func:`body` — the facts, then the notes (or the SMS text), then the late
  details, each part after a blank line; ``extra`` parts go last (a marker
  line, "document missing");
* :func:`revise` — a body as it was written, with the late details of a newer
  revision written again in place: the facts stay as logged, and the notes too
  unless the newer revision has its own (``update_log``).

An app whose text is not plain (HubSpot's rich text) passes a :class:`Style`
with its own line and part separators and escaping.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import phonenumbers

from callbridge.events import CallEvent, CallOutcome, Direction, FaxEvent, SmsEvent
from callbridge.models import LogTarget

AnyEvent = CallEvent | SmsEvent | FaxEvent

#: How the parts that late details bring begin; :func:`revise` rewrites them.
LATE_HEADINGS = ("Summary:", "Recording:", "Transcript:")
NOTES_HEADING = "Notes:"


def _plain(text: str) -> str:
    return text


@dataclass(frozen=True)
class Style:
    """How lines and parts are joined, and how outside text is made safe for the app."""

    line: str = "\n"
    part: str = "\n\n"
    escape: Callable[[str], str] = _plain


#: Plain text (Clio, Smokeball).
PLAIN = Style()
#: HTML rich text, as HubSpot's bodies take it.
RICH = Style(line="<br>", part="<br><br>",
             escape=lambda text: html.escape(text).replace("\r\n", "\n").replace("\n", "<br>"))


def number_text(e164: str | None) -> str:
    """A number as a person reads it (``+1 212-555-0142``); short codes as they are."""
    if not e164:
        return "withheld number"
    if not e164.startswith("+"):
        return e164
    return phonenumbers.format_number(phonenumbers.parse(e164),
                                      phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def duration_text(seconds: int) -> str:
    """``4m 05s``."""
    minutes, secs = divmod(max(seconds, 0), 60)
    return f"{minutes}m {secs:02d}s"


def who(event: AnyEvent, target: LogTarget) -> str:
    """The first chosen contact's name with the number, else the number alone."""
    names = [c.name for c in target.contacts if c.name]
    number = number_text(event.external.number)
    return f"{names[0]} ({number})" if names else number


def subject(event: AnyEvent, target: LogTarget) -> str:
    """One line naming what happened and with whom."""
    party = who(event, target)
    inbound = event.direction == Direction.INBOUND
    if isinstance(event, CallEvent):
        if inbound and event.outcome == CallOutcome.VOICEMAIL:
            return f"Voicemail from {party}"
        if inbound and event.outcome == CallOutcome.MISSED:
            return f"Missed call from {party}"
        return f"{'Inbound call from' if inbound else 'Outbound call to'} {party}"
    if isinstance(event, SmsEvent):
        return f"{'SMS from' if inbound else 'SMS to'} {party}"
    return f"{'Fax from' if inbound else 'Fax to'} {party}"


def facts(event: AnyEvent, target: LogTarget) -> list[str]:
    """The block of facts, one line each, unescaped."""
    lines = [f"Direction: {event.direction.value}",
             f"External number: {number_text(event.external.number)}"]
    if event.internal.number:
        lines.append(f"Firm number: {number_text(event.internal.number)}")
    if event.internal.extension:
        lines.append(f"Extension: {event.internal.extension}")
    if target.user and target.user.name:
        lines.append(f"Staff: {target.user.name}")
    if isinstance(event, CallEvent):
        lines.append(f"Outcome: {event.outcome.value if event.outcome else event.state}")
        lines.append(f"Duration: {duration_text(event.duration_seconds)}"
                     + (f" (talk time {duration_text(event.talk_seconds)})" if event.answered_at else ""))
    elif isinstance(event, FaxEvent):
        lines.append(f"Pages: {event.page_count}; delivery: {event.outcome.value}")
    return lines


def late_details(event: CallEvent, style: Style = PLAIN) -> list[str]:
    """The parts a recording, summary or transcript bring, in that order."""
    parts = []
    if event.summary:
        parts.append(f"Summary:{style.line}{style.escape(event.summary)}")
    if event.recording_url:
        parts.append(f"Recording: {style.escape(event.recording_url)}")
    if event.transcript:
        parts.append(f"Transcript:{style.line}{style.escape(event.transcript)}")
    return parts


def _notes(notes: str, style: Style) -> str:
    return f"{NOTES_HEADING}{style.line}{style.escape(notes)}"


def body(event: AnyEvent, target: LogTarget, *, extra: Sequence[str] = (),
         style: Style = PLAIN) -> str:
    """The log's text: facts, then notes (a call) or the message (an SMS), late details,
    then ``extra`` parts (already in the app's style)."""
    parts = [style.line.join(style.escape(line) for line in facts(event, target))]
    if isinstance(event, CallEvent):
        notes = target.notes if target.notes is not None else event.notes
        if notes:
            parts.append(_notes(notes, style))
        parts += late_details(event, style)
    elif isinstance(event, SmsEvent):
        parts.append(style.escape(event.body))
    return style.part.join([*parts, *extra])


def revise(current: str, event: CallEvent, *, extra: Sequence[str] = (),
           style: Style = PLAIN) -> str:
    """``current`` (a call's text as written by :func:`body`, without its ``extra``
    parts) with the late details of ``event`` written again.

    The facts are kept as written (the staff member named then), and the notes
    unless ``event`` now carries its own.
    """
    parts = current.split(style.part) if current else []
    facts_part = parts[:1]
    kept_notes: list[str] = []
    for part in parts[1:]:
        if part.startswith(LATE_HEADINGS):
            break  # the late details, and nothing of the notes, follow
        kept_notes.append(part)
    notes = style.part.join(kept_notes)
    if event.notes:
        notes = _notes(event.notes, style)
    return style.part.join([*facts_part, *([notes] if notes else []),
                            *late_details(event, style), *extra])
