"""callbridge's own webhook format: events as ``callbridge schema`` describes them, signed.

The body is one event (a JSON object) or a JSON array of up to :data:`MAX_EVENTS`
events. ``tenant`` may be left out (the source's tenant is used); a body naming another
tenant is refused (403). ``source`` may be left out (the URL's source key is used);
another source's key is refused (422). An array is taken whole or not at all.

Signature (``Callbridge-Signature`` header), in the manner of Stripe's::

    Callbridge-Signature: t=1764460800,v1=<hex HMAC-SHA256(key, "1764460800." + body)>

``t`` is the Unix time of signing, in seconds; the signed bytes are ``t``, a full stop,
then the raw body, exactly as sent. The key is the text of the source's secret
(``secret_env``). During a key rotation the server accepts either key
(``previous_secret_env``) and a sender may send several ``v1=`` values (one per key).
A signature whose ``t`` is more than the replay window (5 minutes) from the server's
clock is refused: senders sign each retry afresh. Comparisons take constant time.
A request replayed within the window is a duplicate: acknowledged, nothing changes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from callbridge.errors import EventValidationError
from callbridge.events import AnyEvent, parse_event
from callbridge.eventtext import loads
from callbridge.settings import TenantSettings
from callbridge.sources.base import SourceRefused, SourceRequest

__all__ = ["HEADER", "MAX_EVENTS", "NativeSource", "sign"]

#: The signature header (lower case, as the request's headers are given).
HEADER = "callbridge-signature"
#: The most events one request may carry.
MAX_EVENTS = 100
_PART = re.compile(r"^\s*([a-z0-9]+)=([A-Za-z0-9]+)\s*$")


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The ``Callbridge-Signature`` header's value for ``body`` signed at ``timestamp``."""
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def _mac(secret: str, timestamp: int | str, body: bytes) -> str:
    signed = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def _header(value: str | None) -> tuple[int, list[str]]:
    if not value:
        raise SourceRefused(401, "Callbridge-Signature",
                            "missing: sign each request (t=<unix time>,v1=<HMAC-SHA256>)")
    stamp: int | None = None
    macs: list[str] = []
    for part in value.split(",")[:10]:
        match = _PART.match(part)
        if match is None:
            continue
        key, val = match.groups()
        if key == "t" and val.isdigit() and len(val) <= 12:
            stamp = int(val)
        elif key == "v1" and len(val) == 64:
            macs.append(val.lower())
    if stamp is None or not macs:
        raise SourceRefused(401, "Callbridge-Signature",
                            "is not t=<unix time>,v1=<64 hex digits>")
    return stamp, macs


class NativeSource:
    """The ``callbridge`` format."""

    name = "callbridge"

    def verify(self, request: SourceRequest, secrets: Sequence[str], now: datetime) -> None:
        stamp, macs = _header(request.headers.get(HEADER))
        if abs(now.timestamp() - stamp) > request.replay_window:
            raise SourceRefused(
                401, "Callbridge-Signature",
                f"signed more than {request.replay_window:.0f} s away from the server's time: "
                "sign each request, retries included, when sending it")
        good = False
        for secret in secrets:  # every key against every signature: no early exit
            expected = _mac(secret, stamp, request.body)
            for mac in macs:
                good |= hmac.compare_digest(expected, mac)
        if not good:
            raise SourceRefused(401, "Callbridge-Signature",
                                "does not match the body with the source's key")

    def parse(self, request: SourceRequest, tenant: str,
              tenant_settings: TenantSettings) -> list[AnyEvent]:
        try:
            payload = loads(request.body)
        except EventValidationError as exc:
            first = exc.problems[0]
            raise SourceRefused(400, first.location, first.problem) from None
        many = isinstance(payload, list)
        items: list[Any] = payload if many else [payload]
        if not items or len(items) > MAX_EVENTS or not all(isinstance(i, Mapping) for i in items):
            raise SourceRefused(400, "(body)", f"must be an event (a JSON object) or an array "
                                               f"of 1 to {MAX_EVENTS} of them")
        events: list[AnyEvent] = []
        for index, item in enumerate(items):
            where = f"[{index}]." if many else ""
            if "tenant" in item and item["tenant"] != tenant:
                raise SourceRefused(403, f"{where}tenant", "names another tenant than the source's")
            if "source" in item and item["source"] != request.source:
                raise SourceRefused(422, f"{where}source", "names another source than the URL's")
            given = {**item, "tenant": tenant, "source": request.source}
            try:
                events.append(parse_event(given, region=tenant_settings.default_region))
            except EventValidationError as exc:
                problems = [(where + p.location, p.problem) for p in exc.problems]
                raise SourceRefused(422, *problems[0], problems=problems) from None
        return events
