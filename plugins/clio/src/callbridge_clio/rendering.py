"""What a communication says: the host's standard words (:mod:`callbridge.render`),
and who sent and received it."""

from __future__ import annotations

from typing import Any

from callbridge import render
from callbridge.events import CallEvent, Direction, FaxEvent, SmsEvent
from callbridge.models import LogTarget

#: A communication's subject line.
subject = render.subject


def body(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget, *, note: str | None = None) -> str:
    """The communication's text: facts, notes or the message, late details, then ``note``."""
    return render.body(event, target, extra=[note] if note else [])


def revised_body(current: str, event: CallEvent) -> str:
    """``current`` (a call's body as logged) with the late details of ``event``."""
    return render.revise(current, event)


def participants(event: CallEvent | SmsEvent | FaxEvent, target: LogTarget) -> dict[str, Any]:
    contacts = [{"id": int(c.id), "type": "Contact"} for c in target.contacts]
    user = [{"id": int(target.user.id), "type": "User"}] if target.user else []
    if event.direction == Direction.INBOUND:
        return {"senders": contacts, "receivers": user}
    return {"senders": user, "receivers": contacts}
