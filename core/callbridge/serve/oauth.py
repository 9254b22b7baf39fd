"""Connecting an app from a browser: ``/oauth/{app}/start`` and ``/oauth/{app}/callback``.

A firm's administrator connects (or reconnects) an OAuth 2.0 app without a shell:

1. An operator asks for a **connect link** for a tenant and app
   (``POST /v1/operator/oauth/{app}/links?tenant=T``, with its bearer token) and
   gives it to the firm's administrator. The link is signed, names the tenant and
   the app, and expires (an hour by default); once it has connected the app it is
   spent. An operator may also open ``/oauth/{app}/start?tenant=T`` itself with
   its bearer token.
2. ``start`` checks the link (or the token), makes a **state** (signed, naming the
   tenant, expiring after 10 minutes, single-use), sets a cookie holding the state's
   nonce (so the callback must come back to the browser that started it) and sends
   the browser to the app's authorise page.
3. The app sends the browser back to ``callback``: the state's signature, expiry,
   single use and cookie are checked, the code is exchanged for a token
   (:func:`callbridge.oauth.exchange_code`), the token is saved encrypted in the
   ledger, and the deliveries parked until the connection was authorised again are
   released.

The redirect URI to register with the app is ``{serve.public_url}/oauth/{app}/callback``.
Links and states are signed with a key derived from the ledger's hash key, so any
process on the same ledger checks them; single use is a ledger lock held until
the value would have expired anyway.
"""

from __future__ import annotations

import hmac
import html
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import httpx2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from callbridge import oauth
from callbridge.errors import AuthenticationFailed, RateLimited, TransientError
from callbridge.ledger import Ledger
from callbridge.serve.auth import ApiError, guarded, require_operator
from callbridge.serve.links import (
    LINK_MINUTES,
    MAX_LINK_MINUTES,
    STATE_MINUTES,
    LinkRefused,
    Signed,
    Signer,
    authorisable,
    make_link,
    used_key,
)
from callbridge.serve.operator import wake
from callbridge.serve.operator_models import ConnectLinkOut, dump

__all__ = ["LINK_MINUTES", "STATE_MINUTES", "routes"]

COOKIE = "callbridge_oauth"
T = TypeVar("T")


class OAuthState(Protocol):
    """What these routes need of the server's state."""

    @property
    def runtime(self) -> Any: ...

    @property
    def engine(self) -> Any: ...

    @property
    def clock(self) -> Any: ...

    @property
    def base_url(self) -> str: ...


def _api(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(...)``, a :class:`LinkRefused` it raises answered as an :class:`ApiError`."""
    try:
        return fn(*args, **kwargs)
    except LinkRefused as exc:
        raise ApiError(exc.status, exc.field, exc.problem) from None


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _page(title: str, text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head><body><main><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(text)}</p></main></body></html>", status_code=status)


def _browser(endpoint: Callable[[Request], Awaitable[Response]]
             ) -> Callable[[Request], Awaitable[Response]]:
    """Errors as a short page for a browser, as JSON otherwise."""
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            if _wants_html(request):
                return _page("The app was not connected", f"{exc.field}: {exc.problem}",
                             exc.status)
            return exc.response()
    return run


def routes(state: OAuthState) -> list[BaseRoute]:
    """``/oauth/{app}/start``, ``/oauth/{app}/callback`` and the operator's link endpoint."""
    ledger: Ledger = state.engine.ledger
    signers: list[Signer] = []

    def signer() -> Signer:
        if not signers:
            signers.append(Signer(ledger))
        return signers[0]

    def redirect_uri(app: str) -> str:
        return f"{state.base_url.rstrip('/')}/oauth/{app}/callback"

    def connection(tenant: str, app: str) -> Any:
        """The (tenant, app)'s resolved connection, if it is one a person authorises."""
        return _api(authorisable, state.runtime.settings.current(), state.engine.connections,
                    tenant, app)

    async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await state.engine.db(fn, *args, **kwargs)

    async def spend(kind: str, nonce: str, expires: float) -> bool:
        """Mark a nonce used (a ledger lock kept until it expires); False if it was."""
        ttl = max(expires - state.clock.now().timestamp(), 0.0) + 60.0
        return await db(ledger.try_lock, f"oauth:{kind}:{nonce}", ttl=ttl) is not None

    async def new_link(request: Request) -> Response:
        """A connect link for the tenant's administrator (operator-authenticated)."""
        app = request.path_params["app"]
        tenant = request.query_params.get("tenant")
        if not tenant:
            await require_operator(request, state)
            raise ApiError(400, "tenant", "is missing")
        await require_operator(request, state, tenant)
        minutes_text = request.query_params.get("valid_minutes", str(LINK_MINUTES))
        if not re.fullmatch(r"[0-9]{1,6}", minutes_text):
            raise ApiError(400, "valid_minutes",
                           f"must be a whole number from 1 to {MAX_LINK_MINUTES}")
        connection(tenant, app)
        url, expires = _api(make_link, ledger, state.base_url, tenant, app,
                            minutes=int(minutes_text), now=state.clock.now())
        return JSONResponse(dump(ConnectLinkOut(
            url=url, tenant=tenant, app=app, expires_at=expires,
            redirect_uri=redirect_uri(app))), status_code=201)

    async def start(request: Request) -> Response:
        app = request.path_params["app"]
        tenant = request.query_params.get("tenant", "")
        now = state.clock.now()
        link_nonce = None
        if "authorization" in request.headers:
            await require_operator(request, state, tenant or None)
            if not tenant:
                raise ApiError(400, "tenant", "is missing")
        else:
            link = _api(signer().check, request.query_params.get("link"), purpose="link",
                        app=app, now=now, field="link")
            if tenant and tenant != link.tenant:
                raise ApiError(400, "tenant", "is not the tenant the link was made for")
            if await db(ledger.kv_get, link.tenant, app, used_key(link.nonce)) is not None:
                raise ApiError(400, "link", "has connected the app already; "
                               "ask for a new one to connect it again")
            tenant, link_nonce = link.tenant, link.nonce
        resolved = connection(tenant, app)
        nonce = secrets.token_urlsafe(16)
        expires = now + timedelta(minutes=STATE_MINUTES)
        value = signer().sign(Signed("state", tenant, app, nonce, expires.timestamp(),
                                     link=link_nonce))
        target = oauth.authorize_url(resolved.connection.oauth2,
                                     client_id=resolved.credentials.client_id,
                                     redirect_uri=redirect_uri(app), state=value)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, nonce, max_age=STATE_MINUTES * 60, path=f"/oauth/{app}/",
                            httponly=True, samesite="lax",
                            secure=state.base_url.startswith("https:"))
        return response

    async def callback(request: Request) -> Response:
        app = request.path_params["app"]
        now = state.clock.now()
        signed = _api(signer().check, request.query_params.get("state"), purpose="state",
                      app=app, now=now, field="state")
        cookie = request.cookies.get(COOKIE, "")
        if not hmac.compare_digest(cookie.encode(), signed.nonce.encode()):
            raise ApiError(400, "state", "belongs to an authorisation started in another "
                           "browser; open the connect link in this one")
        if not await spend("state", signed.nonce, signed.expires):
            raise ApiError(400, "state", "was used already; start again from the link")
        resolved = connection(signed.tenant, app)
        transport = state.engine.transports.get(resolved.plugin.name)
        client = httpx2.AsyncClient(transport=transport, timeout=30.0) if transport else None
        query = request.url.query
        try:
            token = await oauth.exchange_code(
                resolved.connection.oauth2, client_id=resolved.credentials.client_id,
                client_secret=resolved.credentials.client_secret,
                redirect_uri=redirect_uri(app),
                redirect_url_received=f"{redirect_uri(app)}?{query}",
                expected_state=request.query_params["state"], client=client)
        except AuthenticationFailed as exc:
            raise ApiError(400, "authorisation", str(exc)) from None
        except (TransientError, RateLimited):
            raise ApiError(502, "authorisation", "the app's token endpoint did not answer; "
                           "start again from the link in a few minutes") from None
        finally:
            if client is not None:
                await client.aclose()
        if signed.link is not None:
            if not await spend("link", signed.link, now.timestamp() + MAX_LINK_MINUTES * 60):
                raise ApiError(400, "link", "has connected the app already; "
                               "ask for a new one to connect it again")
            await db(ledger.kv_set, signed.tenant, app, used_key(signed.link), now.isoformat())
        await db(ledger.token_set, signed.tenant, app, token)
        released: int = await db(oauth.reconnected, ledger, signed.tenant, app)
        if released:
            wake(state)
        text = (f"{app} is connected for {signed.tenant}; {released} delivery(ies) that "
                "waited for it are queued again.")
        response: Response = (_page("Connected", text) if _wants_html(request) else
                              JSONResponse({"tenant": signed.tenant, "app": app,
                                            "connected": True, "released": released}))
        response.delete_cookie(COOKIE, path=f"/oauth/{app}/")
        return response

    return [
        Route("/v1/operator/oauth/{app}/links", guarded(new_link), methods=["POST"]),
        Route("/oauth/{app}/start", _browser(start), methods=["GET"]),
        Route("/oauth/{app}/callback", _browser(callback), methods=["GET"]),
    ]
