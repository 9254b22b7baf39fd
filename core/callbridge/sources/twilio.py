"""Twilio: Programmable Voice status callbacks and Messaging status callbacks.

Twilio posts a form (``application/x-www-form-urlencoded``) to the status callback URL
of a call as it goes (``initiated``, ``ringing``, ``answered``, ``completed``: the
``StatusCallbackEvent`` values a firm subscribes to) and of an outgoing message as its
delivery status changes; an incoming message's webhook may point here too.

**Signature.** ``X-Twilio-Signature`` is the base64 HMAC-SHA1, keyed with the account's
auth token, of the URL Twilio called (scheme, host, path and query, exactly as
configured) followed by every POST parameter, sorted by name, as name then value with
nothing between. The source's secret is the auth token; during a rotation the secondary
token is accepted too (``previous_secret_env``). Under a Twilio webhooks rule, whose
``X-Twilio-Webhooks-Signature-Settings`` header names ``HMAC_SHA256``, the same string is
signed with SHA-256 and the rule's shared key (then the source's secret). Comparisons
take constant time. A URL with or without its default port is accepted, as Twilio's own libraries do. Twilio
signs no time, so there is no replay window: a request sent again is the same revision
of the same event, acknowledged and changing nothing.

**Calls.** ``CallSid`` is the event's id; ``SequenceNumber`` orders its revisions;
``CallStatus`` gives the state:

=============================  ===========  ==========
``CallStatus``                 state        outcome
=============================  ===========  ==========
queued, initiated, ringing     ringing
in-progress                    in_progress
completed                      ended        completed
busy                           ended        busy
no-answer, canceled            ended        missed
failed                         ended        failed
=============================  ===========  ==========

``Direction`` ``inbound`` is a call to the firm (the outside party is ``From``, the
firm's number ``To``); ``outbound-api`` and ``outbound-dial`` are calls from it (the
outside party is ``To``). ``Timestamp`` (when Twilio sent the callback) is the time of
the state reached: a ringing call started then; an answered call was answered then; a
completed call ended then and was answered ``CallDuration`` seconds before. A missing
``Timestamp`` (a callback of another kind) reads as the time the request arrived.
``CallerName`` is the caller-ID name, ``RecordingUrl`` the recording. A leg whose
outside party is a Twilio Client or SIP address (a softphone placing a call, or a call
put through to one) has no one outside the firm: it is acknowledged and stored as
nothing, and the leg to the phone number is the call logged.

**Messages.** ``MessageSid`` is the id; ``MessageStatus`` (or ``SmsStatus``) the status:
accepted, scheduled, queued and sending are pending; sent is sent; delivered and read
are delivered; undelivered, failed and canceled are failed; received (an incoming
message) is inbound with no delivery status. A status callback carries no text and no
time: ``Body`` is read when present (incoming messages), and the message's time is when
the request arrived.

**Tenant.** The tenant is the source's, from the URL. When the source's options name
the account (``account_sid``), a request of another account is refused (403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from callbridge.events import AnyEvent
from callbridge.settings import TenantSettings
from callbridge.sources.base import SourceRefused, SourceRequest
from callbridge.sources.mapping import Fields, text, validated

__all__ = ["ALGORITHMS", "HEADER", "TwilioSource", "signature"]

#: The signature header (lower case, as the request's headers are given).
HEADER = "x-twilio-signature"
#: The most form fields one request may carry (Twilio sends a few dozen at most).
MAX_FIELDS = 200

#: CallStatus → (state, outcome).
CALL_STATES: dict[str, tuple[str, str | None]] = {
    "queued": ("ringing", None), "initiated": ("ringing", None), "ringing": ("ringing", None),
    "in-progress": ("in_progress", None),
    "completed": ("ended", "completed"), "busy": ("ended", "busy"),
    "no-answer": ("ended", "missed"), "canceled": ("ended", "missed"),
    "failed": ("ended", "failed"),
}
#: MessageStatus → delivery status (None: an incoming message).
MESSAGE_STATES: dict[str, str | None] = {
    "accepted": "pending", "scheduled": "pending", "queued": "pending", "sending": "pending",
    "sent": "sent", "delivered": "delivered", "read": "delivered",
    "undelivered": "failed", "failed": "failed", "canceled": "failed",
    "receiving": None, "received": None,
}
DIRECTIONS = {"inbound": "inbound", "outbound-api": "outbound", "outbound-dial": "outbound",
              "outbound": "outbound"}
_DEFAULT_PORTS = {"https": 443, "http": 80}
#: The algorithms a webhooks rule may name (the header below); SHA-1 without one.
ALGORITHMS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"


def _algorithm(request: SourceRequest) -> str:
    """The algorithm the request names (``key=...,algorithm=...``), else HMAC_SHA1."""
    for part in request.headers.get(SETTINGS_HEADER, "").split(",")[:10]:
        name, _, value = part.partition("=")
        if name.strip() == "algorithm" and value.strip():
            algorithm = value.strip().upper()
            if algorithm not in ALGORITHMS:
                raise SourceRefused(401, "X-Twilio-Webhooks-Signature-Settings",
                                    "names an algorithm other than HMAC_SHA1 or HMAC_SHA256")
            return algorithm
    return "HMAC_SHA1"


def signature(url: str, params: Sequence[tuple[str, str]] | Mapping[str, str],
              auth_token: str, algorithm: str = "HMAC_SHA1") -> str:
    """The ``X-Twilio-Signature`` value Twilio sends for a form posted to ``url``
    (``algorithm``: ``HMAC_SHA1``, or ``HMAC_SHA256`` under a webhooks rule)."""
    pairs = sorted(params.items() if isinstance(params, Mapping) else params)
    signed = url + "".join(name + value for name, value in pairs)
    mac = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), ALGORITHMS[algorithm])
    return base64.b64encode(mac.digest()).decode("ascii")


def _url_variants(url: str) -> list[str]:
    """The URL as given, and with its scheme's default port written or left out."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None or parts.port not in (None, default) or parts.hostname is None:
        return [url]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    bare = urlunsplit(parts._replace(netloc=prefix + host))
    ported = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    return [url, ported if parts.port is None else bare]


def form(request: SourceRequest) -> list[tuple[str, str]]:
    """The request's form fields, in the order sent; 400 for a body that is not a form."""
    kind = request.headers.get("content-type", "application/x-www-form-urlencoded")
    if kind.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise SourceRefused(400, "Content-Type",
                            "must be application/x-www-form-urlencoded, as Twilio posts callbacks")
    try:
        return parse_qsl(request.body.decode("utf-8"), keep_blank_values=True,
                         strict_parsing=bool(request.body), max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError:
        raise SourceRefused(400, "(body)", "is not UTF-8 text") from None
    except ValueError:
        raise SourceRefused(400, "(body)", f"is not a form of at most {MAX_FIELDS} fields") from None


def _time(params: Mapping[str, str], request: SourceRequest) -> datetime:
    raw = params.get("Timestamp")
    if not raw:
        return request.received_at
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None or when.tzinfo is None:
        raise SourceRefused(422, "Timestamp", "is not a date as RFC 2822 writes it")
    return when


def _whole(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise SourceRefused(422, name, "must be a whole number")
    return int(raw)


class TwilioSource:
    """The ``twilio`` format: voice and messaging status callbacks, form-encoded."""

    name = "twilio"

    def verify(self, request: SourceRequest, secrets: Sequence[str], now: datetime) -> None:
        given = request.headers.get(HEADER)
        if not given:
            raise SourceRefused(401, "X-Twilio-Signature",
                                "missing: Twilio signs every callback with the auth token")
        params = form(request)
        algorithm = _algorithm(request)
        good = False
        for secret in secrets:  # every token against every URL form: no early exit
            for url in _url_variants(request.url):
                expected = signature(url, params, secret, algorithm)
                good |= hmac.compare_digest(expected.encode("ascii"),
                                            given.strip().encode("utf-8", "replace"))
        if not good:
            raise SourceRefused(401, "X-Twilio-Signature",
                                "does not match the URL and the form with the source's auth token")

    def parse(self, request: SourceRequest, tenant: str,
              tenant_settings: TenantSettings) -> list[AnyEvent]:
        params = dict(form(request))
        account = request.options.get("account_sid")
        if account and params.get("AccountSid") != account:
            raise SourceRefused(403, "AccountSid", "names another account than the source's")
        if params.get("CallSid"):
            event = self._call(params, request, tenant, tenant_settings)
        elif params.get("MessageSid") or params.get("SmsSid"):
            event = self._message(params, request, tenant, tenant_settings)
        else:
            raise SourceRefused(422, "CallSid",
                                "is required (or MessageSid): not a voice or messaging callback")
        return [] if event is None else [event]

    def _call(self, params: Mapping[str, str], request: SourceRequest, tenant: str,
              tenant_settings: TenantSettings) -> AnyEvent | None:
        status = text(params, "CallStatus", "CallStatus", required=True)
        if status not in CALL_STATES:
            raise SourceRefused(422, "CallStatus", "is not a call status Twilio documents")
        state, outcome = CALL_STATES[status]
        direction = self._direction(params)
        when = _time(params, request)
        f = Fields()
        f.put("kind", "call", "CallSid")
        f.put("id", params["CallSid"], "CallSid")
        f.put("tenant", tenant, "(source)")
        f.put("source", request.source, "(source)")
        f.put("direction", direction, "Direction")
        f.put("state", state, "CallStatus")
        f.put("sequence", _whole(params, "SequenceNumber"), "SequenceNumber")
        if not self._parties(f, params, direction):
            return None
        f.put("external.name", params.get("CallerName") or None, "CallerName")
        if state == "ringing":
            f.put("started_at", when.isoformat(), "Timestamp")
        elif state == "in_progress":
            f.put("started_at", when.isoformat(), "Timestamp")
            f.put("answered_at", when.isoformat(), "Timestamp")
        else:
            talked = (_whole(params, "CallDuration") or 0) if outcome == "completed" else 0
            began = when - timedelta(seconds=talked)
            f.put("started_at", began.isoformat(), "CallDuration")
            if outcome == "completed":
                f.put("answered_at", began.isoformat(), "CallDuration")
            f.put("ended_at", when.isoformat(), "Timestamp")
            f.put("outcome", outcome, "CallStatus")
        f.put("recording_url", params.get("RecordingUrl") or None, "RecordingUrl")
        return validated(f, tenant_settings)

    def _message(self, params: Mapping[str, str], request: SourceRequest, tenant: str,
                 tenant_settings: TenantSettings) -> AnyEvent | None:
        field = "MessageStatus" if "MessageStatus" in params else "SmsStatus"
        status = text(params, field, field, required=True)
        if status not in MESSAGE_STATES:
            raise SourceRefused(422, field, "is not a message status Twilio documents")
        direction = "inbound" if status in ("receiving", "received") else "outbound"
        f = Fields()
        f.put("kind", "sms", "MessageSid")
        f.put("id", params.get("MessageSid") or params.get("SmsSid"), "MessageSid")
        f.put("tenant", tenant, "(source)")
        f.put("source", request.source, "(source)")
        f.put("direction", direction, field)
        f.put("status", MESSAGE_STATES[status], field)
        if not self._parties(f, params, direction):
            return None
        f.put("sent_at", request.received_at.isoformat(), "(received)")
        f.put("body", params.get("Body", ""), "Body")
        return validated(f, tenant_settings)

    @staticmethod
    def _direction(params: Mapping[str, str]) -> str:
        raw = text(params, "Direction", "Direction", required=True)
        if raw not in DIRECTIONS:
            raise SourceRefused(422, "Direction", "must be inbound, outbound-api or outbound-dial")
        return DIRECTIONS[raw]

    @staticmethod
    def _parties(f: Fields, params: Mapping[str, str], direction: str) -> bool:
        """Put the outside party and the firm's number; False when the outside party is
        a Twilio Client or SIP address (a softphone's leg: no one outside the firm)."""
        outside, inside = ("From", "To") if direction == "inbound" else ("To", "From")
        number = text(params, outside, outside, required=True)
        assert number is not None
        if _address(number):
            return False
        f.put("external.number", number, outside)
        firm = text(params, inside, inside, required=True)
        if firm is not None and not _address(firm):
            f.put("internal.number", firm, inside)
        return True


def _address(value: str) -> bool:
    """Whether a party is a Twilio Client or SIP address rather than a phone number."""
    return value.strip().lower().startswith(("client:", "sip:"))
