"""Browser sessions of the call-history page: an operator's bearer token exchanged for a
signed cookie, and the token every form carries against cross-site requests.

A user signs in with their operator token (the one the operator API takes as
``Authorization: Bearer``). The server answers with a session cookie: HttpOnly (no
script reads it), ``SameSite=Strict`` (no other site's page sends it), ``Secure``
when the server's public URL is https, scoped to ``/history``, signed with a key
derived from the ledger's hash key (so every process of one deployment accepts it)
and good for :data:`SESSION_SECONDS`. It never holds the token: it holds the
operator's name and a keyed fingerprint of the token's hash, checked on every
request against the settings, so a token removed or changed in the settings ends
its sessions at once.

Every form carries a CSRF token derived from the session's random nonce; a POST
without the right one, or from another origin (``Origin`` header), is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from callbridge.settings import OperatorSettings

__all__ = ["COOKIE", "SESSION_SECONDS", "Session", "SessionKeys"]

#: The session cookie's name.
COOKIE = "callbridge_history"
#: How long a session lasts after signing in (seconds).
SESSION_SECONDS = 8 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def expected_hash(settings: OperatorSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """The SHA-256 (hex) of the operator's current token, as the settings give it."""
    if settings.token_sha256 is not None:
        return settings.token_sha256
    env = os.environ if environ is None else environ
    value = env.get(settings.token_env or "")
    return hashlib.sha256(value.encode()).hexdigest() if value else None


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the operator's name, when the session ends, its nonce."""

    operator: str
    fingerprint: str
    expires: int
    nonce: str


class SessionKeys:
    """Signs and checks session cookies and CSRF tokens with one server-side key."""

    def __init__(self, key: bytes) -> None:
        self._key = hmac.new(key, b"callbridge history session", hashlib.sha256).digest()

    def _mac(self, *parts: str) -> str:
        return _b64(hmac.new(self._key, "\x1f".join(parts).encode(), hashlib.sha256).digest())

    def fingerprint(self, name: str, token_sha256: str) -> str:
        return self._mac("token", name, token_sha256)

    def issue(self, name: str, token_sha256: str, now: datetime) -> tuple[str, Session]:
        """A new session for operator ``name``: (cookie value, session)."""
        session = Session(operator=name, fingerprint=self.fingerprint(name, token_sha256),
                          expires=int(now.timestamp()) + SESSION_SECONDS,
                          nonce=secrets.token_urlsafe(16))
        body = _b64(json.dumps([session.operator, session.fingerprint, session.expires,
                                session.nonce], separators=(",", ":")).encode())
        return f"{body}.{self._mac('cookie', body)}", session

    def read(self, cookie: str | None, operators: Mapping[str, OperatorSettings],
             now: datetime) -> Session | None:
        """The session a cookie holds, if it is ours, unexpired, and its operator's token
        is still the one it was issued for; else None."""
        if not cookie or len(cookie) > 2000 or "." not in cookie:
            return None
        body, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(mac.encode(), self._mac("cookie", body).encode()):
            return None
        try:
            name, fingerprint, expires, nonce = json.loads(_unb64(body))
        except (ValueError, TypeError):
            return None
        if not isinstance(expires, int) or expires <= now.timestamp():
            return None
        settings = operators.get(name) if isinstance(name, str) else None
        current = expected_hash(settings) if settings is not None else None
        if current is None or not hmac.compare_digest(
                str(fingerprint).encode(), self.fingerprint(name, current).encode()):
            return None
        return Session(operator=name, fingerprint=fingerprint, expires=expires, nonce=str(nonce))

    def csrf(self, session: Session) -> str:
        """The token this session's forms carry."""
        return self._mac("csrf", session.nonce)

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given).encode(), self.csrf(session).encode())
