"""What a call, an SMS and a fax look like in HubSpot: the properties each record carries.

Bodies are HubSpot rich text: paragraphs of escaped text, lines joined by ``<br>``,
sections separated by ``<br><br>``. The late details (summary, recording,
transcript) are sections of their own after the notes, so :func:`revised_body`
can write them again in place.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from callbridge.events import CallEvent, CallOutcome, Direction, FaxEvent, SmsEvent
from callbridge.models import LogTarget

from callbridge_hubspot.api import (
    CALL_TO_CONTACT,
    COMMUNICATION_TO_CONTACT,
    NOTE_TO_CONTACT,
    association,
)

#: hs_call_status for each outcome (an inbound voicemail is a call not answered).
CALL_STATUS = {
    CallOutcome.COMPLETED: "COMPLETED",
    CallOutcome.MISSED: "NO_ANSWER",
    CallOutcome.VOICEMAIL: "NO_ANSWER",
    CallOutcome.BUSY: "BUSY",
    CallOutcome.FAILED: "FAILED",
}
#: HubSpot's default call dispositions (hs_call_disposition), by their documented GUIDs.
DISPOSITION = {
    "connected": "f240bbac-87c9-4f6e-bf70-924b57d47db7",
    "busy": "9d9162e7-6cf3-4944-bf63-4dff82258764",
    "no_answer": "73a0d17f-1163-4015-bdd5-ec830791da20",
    "left_voicemail": "b2cf5968-551e-4856-9783-52b3da59a7d0",
}
SECTION = "<br><br>"
#: HubSpot holds at most this many characters in a text property (65,536; kept clear of it).
TEXT_MAX = 65_000
TRUNCATED = "<br><br>(truncated: the rest did not fit in HubSpot)"


def capped(text: str) -> str:
    """``text`` within HubSpot's limit for a text property, marked when cut."""
    if len(text) <= TEXT_MAX:
        return text
    cut = text[:TEXT_MAX - len(TRUNCATED)]
    cut = cut[:cut.rfind("&")] if cut.rfind("&") > cut.rfind(";") else cut  # no half entity
    cut = cut[:cut.rfind("<")] if cut.rfind("<") > cut.rfind(">") else cut  # no half tag
    return cut + TRUNCATED
LATE_HEADINGS = ("Summary:", "Recording:", "Transcript:")


def timestamp(at: datetime) -> str:
    """hs_timestamp: UTC ISO 8601 with milliseconds."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def shown(e164: str | None) -> str:
    if not e164:
        return "withheld number"
    if not e164.startswith("+"):
        return e164  # a short code
    return phonenumbers.format_number(phonenumbers.parse(e164),
                                      phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _text(value: str) -> str:
    return html.escape(value).replace("\r\n", "\n").replace("\n", "<br>")


def _who(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget) -> str:
    names = [c.name for c in target.contacts if c.name]
    number = shown(event.external.number)
    return f"{names[0]} ({number})" if names else number


def title(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget) -> str:
    who = _who(event, target)
    inbound = event.direction == Direction.INBOUND
    if isinstance(event, CallEvent):
        if inbound and event.outcome == CallOutcome.VOICEMAIL:
            return f"Voicemail from {who}"
        if inbound and event.outcome == CallOutcome.MISSED:
            return f"Missed call from {who}"
        return f"{'Inbound call from' if inbound else 'Outbound call to'} {who}"
    if isinstance(event, SmsEvent):
        return f"{'SMS from' if inbound else 'SMS to'} {who}"
    return f"{'Fax from' if inbound else 'Fax to'} {who}"


def _minutes(seconds: int) -> str:
    minutes, secs = divmod(max(seconds, 0), 60)
    return f"{minutes}m {secs:02d}s"


def late_sections(event: CallEvent) -> list[str]:
    out = []
    if event.summary:
        out.append("Summary:<br>" + _text(event.summary))
    if event.recording_url:
        out.append("Recording: " + _text(event.recording_url))
    if event.transcript:
        out.append("Transcript:<br>" + _text(event.transcript))
    return out


def call_body(event: CallEvent, target: LogTarget) -> str:
    outcome = event.outcome.value if event.outcome else "in progress"
    facts = [f"Direction: {event.direction.value}", f"Outcome: {outcome}",
             f"Duration: {_minutes(event.duration_seconds)}"
             + (f" (talk time {_minutes(event.talk_seconds)})" if event.answered_at else "")]
    if event.internal.extension:
        facts.append(f"Extension: {_text(event.internal.extension)}")
    sections = ["<br>".join(facts)]
    notes = target.notes if target.notes is not None else event.notes
    if notes:
        sections.append("Notes:<br>" + _text(notes))
    return capped(SECTION.join(sections + late_sections(event)))


def revised_body(current: str, event: CallEvent) -> str:
    """A logged call's body with the late details of ``event`` written again.

    The facts are kept as logged, the notes too unless the event now has its own.
    """
    sections = current.split(SECTION) if current else []
    kept = [s for s in sections if not s.startswith(LATE_HEADINGS)]
    if event.notes:
        kept = [s for s in kept if not s.startswith("Notes:")] + ["Notes:<br>" + _text(event.notes)]
    kept = [s for s in kept if not s.startswith("(truncated:")]
    return capped(SECTION.join(kept + late_sections(event)))


def _numbers(event: CallEvent | SmsEvent | FaxEvent) -> tuple[str | None, str | None]:
    """(from, to) as the firm's phone system saw the call."""
    external, internal = event.external.number, event.internal.number
    return (external, internal) if event.direction == Direction.INBOUND else (internal, external)


def call_properties(event: CallEvent, target: LogTarget, marker: tuple[str, str] | None,
                    ) -> dict[str, str]:
    props = {
        "hs_timestamp": timestamp(event.started_at),
        "hs_call_title": title(event, target),
        "hs_call_body": call_body(event, target),
        "hs_call_direction": "INBOUND" if event.direction == Direction.INBOUND else "OUTBOUND",
        "hs_call_status": CALL_STATUS[event.outcome] if event.outcome else "IN_PROGRESS",
        # Talk time: a call not answered lasted no time in HubSpot's sense.
        "hs_call_duration": str(event.talk_seconds * 1000 if event.answered_at else 0),
    }
    disposition = {CallOutcome.COMPLETED: "connected", CallOutcome.BUSY: "busy",
                   CallOutcome.MISSED: "no_answer"}.get(event.outcome) if event.outcome else None
    if event.outcome == CallOutcome.VOICEMAIL:
        disposition = "left_voicemail" if event.direction == Direction.OUTBOUND else "no_answer"
    if disposition:
        props["hs_call_disposition"] = DISPOSITION[disposition]
    frm, to = _numbers(event)
    if frm:
        props["hs_call_from_number"] = frm
    if to:
        props["hs_call_to_number"] = to
    # HubSpot plays recordings from HTTPS addresses only.
    if event.recording_url and event.recording_url.startswith("https://"):
        props["hs_call_recording_url"] = event.recording_url
    if target.user is not None:
        props["hubspot_owner_id"] = target.user.id
    if marker is not None:
        props[marker[0]] = marker[1]
    return props


def sms_properties(event: SmsEvent, target: LogTarget, marker: tuple[str, str] | None,
                   ) -> dict[str, str]:
    inbound = event.direction == Direction.INBOUND
    head = (f"[Inbound SMS from {shown(event.external.number)}]" if inbound
            else f"[Outbound SMS to {shown(event.external.number)}]")
    props = {
        "hs_timestamp": timestamp(event.sent_at),
        "hs_communication_channel_type": "SMS",
        "hs_communication_logged_from": "CRM",
        "hs_communication_body": capped(f"{_text(head)} {_text(event.body)}"),
    }
    if target.user is not None:
        props["hubspot_owner_id"] = target.user.id
    if marker is not None:
        props[marker[0]] = marker[1]
    return props


def fax_note_properties(event: FaxEvent, target: LogTarget, marker: tuple[str, str] | None,
                        file_id: str | None, why_missing: str | None) -> dict[str, str]:
    lines = [_text(title(event, target)), f"Pages: {event.page_count}",
             f"Delivery: {event.outcome.value}"]
    if why_missing:
        lines.append(_text(f"The fax document is missing: {why_missing}."))
    props = {"hs_timestamp": timestamp(event.sent_at), "hs_note_body": "<br>".join(lines)}
    if file_id:
        props["hs_attachment_ids"] = file_id
    if target.user is not None:
        props["hubspot_owner_id"] = target.user.id
    if marker is not None:
        props[marker[0]] = marker[1]
    return props


def associations(target: LogTarget, type_id: int) -> list[dict[str, Any]]:
    return [association(c.id, type_id) for c in target.contacts]


TYPE_TO_CONTACT = {"calls": CALL_TO_CONTACT, "communications": COMMUNICATION_TO_CONTACT,
                   "notes": NOTE_TO_CONTACT}
