"""Connect links and OAuth states: signed, expiring values naming a tenant and an app.

Kept apart from the server's routes (no web library here) so ``callbridge
connect-link`` makes the same links as ``POST /v1/operator/oauth/{app}/links``.
Both are signed with a key derived from the ledger's hash key, so every process on the
same ledger checks them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from callbridge.errors import CallbridgeError
from callbridge.ledger import Ledger

__all__ = ["LINK_MINUTES", "MAX_LINK_MINUTES", "STATE_MINUTES", "LinkRefused", "Signed",
           "Signer", "authorisable", "make_link", "print_link", "used_key"]

#: How long a connect link is valid by default, and at most (minutes).
LINK_MINUTES = 60
MAX_LINK_MINUTES = 7 * 24 * 60
#: How long the administrator has between start and callback (minutes).
STATE_MINUTES = 10


class LinkRefused(CallbridgeError):
    """A link, a state or a connection refused: ``status`` (4xx), ``field``, ``problem``."""

    def __init__(self, status: int, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.status = status
        self.field = field
        self.problem = problem


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Signed:
    """A link or a state: what it grants, to whom, until when."""

    purpose: str  # "link" | "state"
    tenant: str
    app: str
    nonce: str
    expires: float  # Unix time
    link: str | None = None  # a state started from a link: the link's nonce


class Signer:
    """Signs and checks links and states with a key derived from the ledger's hash key."""

    def __init__(self, ledger: Ledger) -> None:
        if ledger.hash_key is None:
            raise RuntimeError("the ledger has no hash key yet: migrate() first")
        self._key = hmac.new(ledger.hash_key.key, b"callbridge oauth links and states",
                             hashlib.sha256).digest()

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def sign(self, value: Signed) -> str:
        body = {"p": value.purpose, "t": value.tenant, "a": value.app, "n": value.nonce,
                "e": int(value.expires)}
        if value.link is not None:
            body["l"] = value.link
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def check(self, text: str | None, *, purpose: str, app: str, now: datetime,
              field: str) -> Signed:
        """The signed value, or :class:`LinkRefused` naming ``field``."""
        if not text:
            raise LinkRefused(400, field, "is missing")
        payload, _, mac = text.partition(".")
        if len(text) > 2000 or not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            raise LinkRefused(400, field, "is not one this server made (or was changed)")
        body = json.loads(_unb64(payload))
        if body.get("p") != purpose or body.get("a") != app:
            raise LinkRefused(400, field, "was made for another app or purpose")
        if body["e"] < now.timestamp():
            raise LinkRefused(400, field, "has expired; ask for a new connect link"
                           if purpose == "link" else "has expired; start again from the link")
        return Signed(purpose=purpose, tenant=body["t"], app=app, nonce=body["n"],
                      expires=float(body["e"]), link=body.get("l"))


def used_key(nonce: str) -> str:
    """The ledger entry that says a connect link has connected its app (so ``start``
    refuses it before the administrator goes through the app's page for nothing)."""
    return "oauth:link-used:" + hashlib.sha256(nonce.encode()).hexdigest()[:32]


def authorisable(settings: Any, connections: Any, tenant: str, app: str) -> Any:
    """The (tenant, app)'s resolved connection (:class:`callbridge.connections.Resolved`)
    when it is one a person authorises (OAuth 2.0 authorization code, client id and
    secret set); :class:`LinkRefused` saying why not."""
    try:
        tenant_settings = settings.tenant(tenant)
    except KeyError:
        raise LinkRefused(404, "tenant", "no such tenant in the settings") from None
    if app not in tenant_settings.apps:
        raise LinkRefused(404, "app", "the tenant has no such app in the settings")
    try:
        resolved = connections.resolve(tenant, tenant_settings, app)
    except CallbridgeError:
        raise LinkRefused(409, "app", "its plugin or options are not usable; "
                          "see `callbridge doctor`") from None
    conn = resolved.connection
    if conn.auth != "oauth2" or conn.oauth2 is None or conn.oauth2.grant != "authorization_code":
        raise LinkRefused(409, "app", "does not connect through a person's authorisation "
                          "(OAuth 2.0 authorization code)")
    if not resolved.credentials.client_id or not resolved.credentials.client_secret:
        raise LinkRefused(409, "app", "its client id and secret are not set "
                          "({credentials_env}_CLIENT_ID and _CLIENT_SECRET)")
    return resolved


def make_link(ledger: Ledger, base_url: str, tenant: str, app: str, *, minutes: int,
              now: datetime) -> tuple[str, datetime]:
    """A connect link for (tenant, app), valid ``minutes`` from ``now``: (url, expiry)."""
    if not 1 <= minutes <= MAX_LINK_MINUTES:
        raise LinkRefused(400, "valid_minutes", f"must be a whole number from 1 to "
                          f"{MAX_LINK_MINUTES}")
    expires = now + timedelta(minutes=minutes)
    link = Signer(ledger).sign(Signed("link", tenant, app, secrets.token_urlsafe(16),
                                      expires.timestamp()))
    query = urlencode({"tenant": tenant, "link": link})
    return f"{base_url.rstrip('/')}/oauth/{app}/start?{query}", expires


def print_link(runtime: Any, app: str, tenant: str, minutes: int) -> None:
    """``callbridge connect-link``: print a connect link made from the settings (the
    server's ``serve.public_url``, else its host and port) and the ledger, as the
    operator API makes one; refused (exit 2) as the API would refuse."""
    from callbridge.clock import SYSTEM
    from callbridge.commands import fail
    from callbridge.connections import Connections

    settings = runtime.settings.current()
    try:
        authorisable(settings, Connections(runtime.registry), tenant, app)
    except LinkRefused as exc:
        raise fail(str(exc), 2) from None
    serve = settings.serve
    base_url = serve.public_url or f"http://{serve.host}:{serve.port}"
    ledger = runtime.ledger()
    try:
        url, _ = make_link(ledger, base_url, tenant, app, minutes=minutes, now=SYSTEM.now())
    finally:
        ledger.close()
    print(url)
