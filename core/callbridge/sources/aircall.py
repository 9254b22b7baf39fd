"""Aircall: call webhooks.

Aircall posts one JSON object per event to the webhook's URL::

    {"resource": "call", "event": "call.ended", "timestamp": 1772445840,
     "token": "<the webhook's token>", "data": {<the call>}}

**Authentication.** Aircall signs nothing: each body carries the webhook's ``token``
(shown when the webhook is created). The source's secret is that token; it is compared in
constant time with the body's, and during a rotation (a new webhook replacing the old)
the previous token is accepted too (``previous_secret_env``). Aircall sends no time to
check, so there is no replay window: a body sent again is the same revision of the same
event, acknowledged and changing nothing.

**Events.** Events of another resource (users, numbers, contacts...) are acknowledged
and stored as nothing. A call event's state comes from the call itself, so every call
event (``call.created``, ``call.ringing_on_agent``, ``call.answered``, ``call.hungup``,
``call.ended``, ``call.voicemail_left``, ``call.tagged``...) is a revision of one event:

* ``ended_at`` set, or ``status`` ``done`` → ended: ``completed`` when it was answered,
  ``voicemail`` when a voicemail was left, else ``missed``;
* else ``answered_at`` set, or ``status`` ``answered`` → in progress;
* else ringing.

Revisions are ordered by state, then by the envelope's ``timestamp`` (the event's
``sequence``). ``data.id`` is the event's id; ``direction`` its direction;
``raw_digits`` the outside party (``anonymous`` when withheld); ``number.digits`` the
firm's number; ``user.email`` the staff member; ``started_at``, ``answered_at`` and
``ended_at`` (Unix times) its times; ``recording`` (else ``voicemail``) its recording;
the Aircall contact's name, when the call has one, the caller's name.

**Tenant.** The tenant is the source's, from the URL; nothing in the body names one.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from callbridge.errors import EventValidationError
from callbridge.events import AnyEvent
from callbridge.eventtext import loads
from callbridge.settings import TenantSettings
from callbridge.sources.base import SourceRefused, SourceRequest
from callbridge.sources.mapping import Fields, from_unix, text, validated

__all__ = ["AircallSource", "envelope"]

DIRECTIONS = ("inbound", "outbound")


def envelope(request: SourceRequest) -> Mapping[str, Any]:
    """The body as a JSON object; 400 otherwise."""
    kind = request.headers.get("content-type", "application/json")
    if kind.split(";")[0].strip().lower() != "application/json":
        raise SourceRefused(400, "Content-Type", "must be application/json, as Aircall posts events")
    try:
        payload = loads(request.body)
    except EventValidationError as exc:
        first = exc.problems[0]
        raise SourceRefused(400, first.location, first.problem) from None
    if not isinstance(payload, Mapping):
        raise SourceRefused(400, "(body)", "must be a JSON object (one Aircall event)")
    return payload


def _object(payload: Mapping[str, Any], name: str, origin: str) -> Mapping[str, Any]:
    value = payload.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SourceRefused(422, origin, "must be an object")
    return value


class AircallSource:
    """The ``aircall`` format: call events, JSON, authenticated by the webhook's token."""

    name = "aircall"

    def verify(self, request: SourceRequest, secrets: Sequence[str], now: datetime) -> None:
        token = envelope(request).get("token")
        if not isinstance(token, str) or not token:
            raise SourceRefused(401, "token", "missing: Aircall sends the webhook's token in "
                                              "each body")
        given = token.encode("utf-8")
        good = False
        for secret in secrets:  # every token compared: no early exit
            good |= hmac.compare_digest(secret.encode("utf-8"), given)
        if not good:
            raise SourceRefused(401, "token", "is not the source's webhook token")

    def parse(self, request: SourceRequest, tenant: str,
              tenant_settings: TenantSettings) -> list[AnyEvent]:
        payload = envelope(request)
        resource = text(payload, "resource", "resource", required=True)
        event = text(payload, "event", "event", required=True)
        assert event is not None
        if resource != "call" or not event.startswith("call."):
            return []  # another resource's event: acknowledged, nothing to store
        stamp = payload.get("timestamp")
        if stamp is not None:
            from_unix(stamp, "timestamp")  # checked: it orders the revisions
        call = _object(payload, "data", "data")
        if not call:
            raise SourceRefused(422, "data", "is required: the call")
        return [self._call(call, stamp, request, tenant, tenant_settings)]

    def _call(self, call: Mapping[str, Any], stamp: int | None, request: SourceRequest,
              tenant: str, tenant_settings: TenantSettings) -> AnyEvent:
        ident = call.get("id")
        if isinstance(ident, bool) or not isinstance(ident, int | str) or ident == "":
            raise SourceRefused(422, "data.id", "is required: the call's id")
        direction = text(call, "direction", "data.direction", required=True)
        if direction not in DIRECTIONS:
            raise SourceRefused(422, "data.direction", "must be inbound or outbound")
        started = from_unix(call.get("started_at"), "data.started_at")
        answered = from_unix(call.get("answered_at"), "data.answered_at")
        ended = from_unix(call.get("ended_at"), "data.ended_at")
        if started is None:
            raise SourceRefused(422, "data.started_at", "is required: when the call began")
        status = call.get("status")
        if ended is not None or status == "done":
            state = "ended"
        elif answered is not None or status == "answered":
            state = "in_progress"
        else:
            state = "ringing"
        f = Fields()
        f.put("kind", "call", "data")
        f.put("id", str(ident), "data.id")
        f.put("tenant", tenant, "(source)")
        f.put("source", request.source, "(source)")
        f.put("direction", direction, "data.direction")
        f.put("state", state, "data.status")
        f.put("sequence", stamp, "timestamp")
        digits = call.get("raw_digits")
        if digits is not None and not isinstance(digits, str):
            raise SourceRefused(422, "data.raw_digits", "must be text")
        f.put("external.number", digits or "anonymous", "data.raw_digits")
        contact = _object(call, "contact", "data.contact")
        name = " ".join(p for p in (contact.get("first_name"), contact.get("last_name"))
                        if isinstance(p, str) and p.strip())
        company = contact.get("company_name")
        f.put("external.name", name or (company if isinstance(company, str) and company else None),
              "data.contact")
        user = _object(call, "user", "data.user")
        f.put("internal.email", text(user, "email", "data.user.email"), "data.user.email")
        number = _object(call, "number", "data.number")
        f.put("internal.number", text(number, "digits", "data.number.digits"),
              "data.number.digits")
        f.put("started_at", started.isoformat(), "data.started_at")
        if answered is not None:
            f.put("answered_at", answered.isoformat(), "data.answered_at")
        recording = text(call, "recording", "data.recording")
        voicemail = text(call, "voicemail", "data.voicemail")
        if state == "ended":
            if ended is None:
                raise SourceRefused(422, "data.ended_at", "is required once the call is done")
            f.put("ended_at", ended.isoformat(), "data.ended_at")
            outcome = "completed" if answered else "voicemail" if voicemail else "missed"
            f.put("outcome", outcome, "data.answered_at")
        if recording is not None:
            f.put("recording_url", recording, "data.recording")
        elif voicemail is not None:
            f.put("recording_url", voicemail, "data.voicemail")
        return validated(f, tenant_settings)
