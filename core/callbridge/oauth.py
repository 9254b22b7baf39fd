"""OAuth 2.0 authorization-code flow with refresh tokens, over httpx2.

Building the authorize URL and the token request bodies, and parsing the
redirect, use authlib's RFC 6749 helpers; the HTTP goes through httpx2 (authlib's
own httpx integration imports httpx, which this project does not use).

The refresh rule (:class:`OAuth2Auth`): a token is refreshed shortly before it
expires, and once after a 401. A refresh runs under the token store's
``refresh_lock(tenant, app)`` (one at a time per connection, across processes
on one database), re-reads the stored token inside the lock (another process
may have refreshed already) and saves the new token at once, so a restart never
reuses a dead one. A refresh the app refuses is :class:`AuthenticationFailed`.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
from authlib.oauth2.rfc6749.errors import (  # type: ignore[import-untyped]
    MismatchingStateException,
    MissingCodeException,
)
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    parse_authorization_code_response,
    prepare_grant_uri,
    prepare_token_request,
)

from callbridge.capabilities import OAuth2Config
from callbridge.errors import AuthenticationFailed, RateLimited, TransientError
from callbridge.ratelimit import parse_retry_after
from callbridge.redact import redact, register_secret

if TYPE_CHECKING:
    from callbridge.http import TokenStore
    from callbridge.ledger import Ledger

#: Refresh this many seconds before the token's stated expiry.
EXPIRY_LEEWAY = 60.0


def new_state() -> str:
    """A fresh, unguessable ``state`` value for one authorisation attempt."""
    return secrets.token_urlsafe(32)


def authorize_url(config: OAuth2Config, *, client_id: str, redirect_uri: str, state: str) -> str:
    """The URL to send the user to, to authorise the connection in the app."""
    extra = dict(config.extra_authorize_params)
    url: str = prepare_grant_uri(config.authorize_url, client_id, "code", redirect_uri,
                                 scope=config.scope, state=state, **extra)
    return url


def _with_expiry(token: dict[str, Any], now: float) -> dict[str, Any]:
    expires_in = token.get("expires_in")
    try:
        seconds = float(expires_in) if expires_in is not None else None
    except (TypeError, ValueError):
        seconds = None
    if seconds is not None:
        token["expires_at"] = now + seconds
    register_secret(token.get("access_token"), slot=_SLOT_NEW_ACCESS)
    register_secret(token.get("refresh_token"), slot=_SLOT_NEW_REFRESH)
    return token


# A token just received: held here until its connection registers it under its own slot.
_SLOT_NEW_ACCESS = "oauth:new:access"
_SLOT_NEW_REFRESH = "oauth:new:refresh"


def _client_auth(config: OAuth2Config, client_id: str, client_secret: str
                 ) -> tuple[dict[str, str], str | None]:
    """(the client's fields for the form body, the Basic credential or None), by
    ``config.client_auth``."""
    register_secret(client_secret)
    if config.client_auth == "basic":
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        register_secret(basic)
        return {"client_id": client_id}, basic
    return {"client_id": client_id, "client_secret": client_secret}, None


async def _token_request(url: str, body: str, client: httpx2.AsyncClient | None,
                         basic: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    if basic is not None:
        headers["Authorization"] = f"Basic {basic}"
    own = client is None
    http = client if client is not None else httpx2.AsyncClient(timeout=30.0)
    try:
        try:
            response = await http.post(url, content=body.encode(), headers=headers)
        except httpx2.TransportError as exc:
            raise TransientError(
                f"the app's token endpoint did not answer ({type(exc).__name__})") from None
    finally:
        if own:
            await http.aclose()
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if status == 429:
        raise RateLimited("the app's token endpoint is rate limiting",
                          retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        raise TransientError(f"the app's token endpoint failed ({status})")
    if status >= 400 or not isinstance(data, dict) or not data.get("access_token"):
        reason = ""
        if isinstance(data, dict) and data.get("error"):
            reason = f": {data.get('error')}"
            if data.get("error_description"):
                reason += f" ({str(data['error_description'])[:200]})"
        raise AuthenticationFailed(redact(f"the app refused the token request ({status}){reason}"))
    return dict(data)


async def exchange_code(config: OAuth2Config, *, client_id: str, client_secret: str,
                        redirect_uri: str, redirect_url_received: str, expected_state: str,
                        client: httpx2.AsyncClient | None = None) -> dict[str, Any]:
    """Turn the redirect the app sent back into a token.

    Checks ``state`` against the one sent (a mismatch is
    :class:`AuthenticationFailed`: the flow was not started here or was
    tampered with) and turns ``?error=access_denied`` into a clear refusal.
    Returns the token with ``expires_at`` (Unix time) added.
    """
    if not expected_state:
        raise ValueError("expected_state is required")
    params = dict(parse_qsl(urlsplit(redirect_url_received).query))
    error = params.get("error")
    if error == "access_denied":
        raise AuthenticationFailed("access was declined in the app; nothing was connected")
    if error:
        raise AuthenticationFailed(redact(f"the app refused to authorise the connection: {error}"))
    try:
        parsed = parse_authorization_code_response(redirect_url_received, state=expected_state)
    except MismatchingStateException:
        raise AuthenticationFailed(
            "the state in the redirect does not match the one this authorisation sent; "
            "start the authorisation again") from None
    except MissingCodeException:
        raise AuthenticationFailed("the redirect carries no authorisation code") from None
    fields, basic = _client_auth(config, client_id, client_secret)
    body = prepare_token_request("authorization_code", redirect_uri=redirect_uri,
                                 code=parsed["code"], **fields)
    return _with_expiry(await _token_request(config.token_url, body, client, basic), time.time())


async def refresh(config: OAuth2Config, *, client_id: str, client_secret: str,
                  token: Mapping[str, Any], client: httpx2.AsyncClient | None = None
                  ) -> dict[str, Any]:
    """Use the refresh token for a new access token.

    The old refresh token is kept when the app sends none back (Clio's refresh
    tokens are reusable); ``expires_at`` is set from ``expires_in``.
    """
    refresh_token = token.get("refresh_token")
    if not refresh_token:
        raise AuthenticationFailed(
            "the connection has no refresh token; authorise it again (callbridge auth)")
    fields, basic = _client_auth(config, client_id, client_secret)
    body = prepare_token_request("refresh_token", refresh_token=refresh_token, **fields)
    new = await _token_request(config.token_url, body, client, basic)
    if not new.get("refresh_token"):
        new["refresh_token"] = refresh_token
    return _with_expiry(new, time.time())


async def client_credentials(config: OAuth2Config, *, client_id: str, client_secret: str,
                             client: httpx2.AsyncClient | None = None) -> dict[str, Any]:
    """A token for the client itself (the client-credentials grant): no user, no refresh
    token; asked for again when it expires."""
    fields, basic = _client_auth(config, client_id, client_secret)
    scope = {"scope": config.scope} if config.scope else {}
    body = prepare_token_request("client_credentials", **fields, **scope)
    return _with_expiry(await _token_request(config.token_url, body, client, basic), time.time())


class OAuth2Auth(httpx2.Auth):
    """Adds the bearer token to each request; refreshes before expiry and once on a 401.

    One instance per (tenant, app) client. ``token_client`` is the client the
    token requests go through (a plain client sharing the API client's
    innermost transport), or a callable returning it.
    """

    def __init__(self, config: OAuth2Config, *, tenant: str, app: str, client_id: str,
                 client_secret: str, tokens: TokenStore,
                 token_client: httpx2.AsyncClient | Callable[[], httpx2.AsyncClient] | None = None,
                 clock: Callable[[], float] = time.time, leeway: float = EXPIRY_LEEWAY) -> None:
        self.config = config
        self.tenant = tenant
        self.app = app
        self._client_id = client_id
        self._client_secret = client_secret
        self._tokens = tokens
        self._token_client = token_client
        self._clock = clock
        self._leeway = leeway
        self._token: dict[str, Any] | None = None
        self._lock: asyncio.Lock | None = None
        self.refreshes = 0  # for diagnostics
        self._slot = f"oauth:{tenant}:{app}"
        register_secret(client_secret)

    def _register(self, token: Mapping[str, Any]) -> None:
        """Redact this connection's tokens: its slot keeps the newest two of each."""
        register_secret(token.get("access_token"), slot=f"{self._slot}:access")
        register_secret(token.get("refresh_token"), slot=f"{self._slot}:refresh")

    def _client(self) -> httpx2.AsyncClient | None:
        if callable(self._token_client) and not isinstance(self._token_client, httpx2.AsyncClient):
            return self._token_client()
        return self._token_client

    def _local_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _expiring(self, token: Mapping[str, Any]) -> bool:
        expires_at = token.get("expires_at")
        return isinstance(expires_at, int | float) and expires_at - self._leeway <= self._clock()

    async def _load(self) -> dict[str, Any]:
        token = await self._tokens.load(self.tenant, self.app)
        if (not token or not token.get("access_token")) \
                and self.config.grant == "client_credentials":
            return await self._refresh({})
        if not token or not token.get("access_token"):
            raise AuthenticationFailed(
                f"app '{self.app}' is not authorised for this tenant; run callbridge auth")
        self._register(token)
        return dict(token)

    async def current_token(self) -> dict[str, Any]:
        """The token to use now: cached, else loaded; refreshed first if about to expire."""
        if self._token is None:
            self._token = await self._load()
        if self._expiring(self._token):
            self._token = await self._refresh(self._token)
        return self._token

    async def _refresh(self, stale: Mapping[str, Any]) -> dict[str, Any]:
        """Refresh once for everyone holding ``stale``; later callers get the new token."""
        async with self._local_lock(), self._tokens.refresh_lock(self.tenant, self.app):
            stored = await self._tokens.load(self.tenant, self.app)
            if (stored and stored.get("access_token")
                    and stored.get("access_token") != stale.get("access_token")
                    and not self._expiring(stored)):
                # Someone (this process or another) refreshed while we waited.
                self._token = dict(stored)
                self._register(self._token)
                return self._token
            base = stored if stored and stored.get("refresh_token") else stale
            if self.config.grant == "client_credentials":
                new = await client_credentials(self.config, client_id=self._client_id,
                                               client_secret=self._client_secret,
                                               client=self._client())
            else:
                new = await refresh(self.config, client_id=self._client_id,
                                    client_secret=self._client_secret, token=base,
                                    client=self._client())
            self._register(new)
            await self._tokens.save(self.tenant, self.app, new)
            self.refreshes += 1
            self._token = new
            return new

    async def async_auth_flow(self, request: httpx2.Request
                              ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = await self.current_token()
        request.headers["Authorization"] = f"Bearer {token['access_token']}"
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        token = await self._refresh(token)
        request.headers["Authorization"] = f"Bearer {token['access_token']}"
        yield request

    def sync_auth_flow(self, request: httpx2.Request
                       ) -> Any:  # pragma: no cover - the host only builds async clients
        raise RuntimeError("OAuth2Auth works with httpx2.AsyncClient only; use ctx.sync.http")


def reconnected(ledger: Ledger, tenant: str, app: str) -> int:
    """After a new token for (tenant, app) (``callbridge auth``, or the server's OAuth
    callback): release the deliveries parked for re-authorisation, re-queue those a
    1.x host failed on authentication, and make the app's event subscription due for a
    check (an app may drop it with the old authorisation). Returns how many will run
    again."""
    from callbridge.appevents import recheck_soon

    recheck_soon(ledger, tenant, app, ledger.clock.now())
    released = ledger.unpark(tenant, app, "reauthorise")
    for view in ledger.history(tenant=tenant, app=app, status="failed", limit=10**6):
        if view.reason == "authentication_failed":
            ledger.requeue(view.delivery_id, mode=view.mode)
            released += 1
    return released
