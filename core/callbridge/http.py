"""The HTTP layer every plugin talks to its app through: ``ctx.http``.

:func:`build_client` makes one :class:`httpx2.AsyncClient` per (tenant, app):
the app's base URL (per region), timeouts, a connection pool, a User-Agent
naming callbridge and the plugin, the connection's credentials, the plugin's
rate-limit buckets and retries. Every answer that is not 2xx/3xx after retries
is raised as one of the host's exceptions (:mod:`callbridge.errors`), with a
message that holds no query string, token or phone number.

Retry rules (see docs/http.md):

* 429, 502, 503, 504, connect errors and timeouts are retried with exponential
  backoff and jitter, waiting at least ``Retry-After`` when the app sends it.
* A wait longer than :attr:`RetryPolicy.inline_max_wait` is not slept:
  :class:`~callbridge.errors.RateLimited` with ``retry_after`` is raised so the
  host schedules the delivery.
* POST and PATCH may create or change a record. They are retried only when the
  request surely did not reach the app (connect error, 429, 503 with
  Retry-After), unless marked ``extensions={"callbridge_idempotent": True}``
  (the app's idempotency key is set, or the request is a search sent by POST).
  Otherwise :class:`UncertainWrite` tells the caller to look for the record
  before trying again.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx2
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_exponential_jitter

import callbridge
from callbridge.capabilities import Connection, RateBucket
from callbridge.clock import SYSTEM, Clock
from callbridge.errors import (
    AppError,
    AuthenticationFailed,
    ConfigError,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from callbridge.httpauth import (
    Credentials,
    HeaderAuth,
    MemoryTokenStore,
    ScopedAuth,
    TokenStore,
    origin_of,
    token_id,
)
from callbridge.oauth import OAuth2Auth
from callbridge.pools import OriginPools, PooledTransport
from callbridge.ratelimit import LimiterRegistry, Ticket, parse_retry_after
from callbridge.redact import install_log_redaction, redact, register_secret

__all__ = [
    "AppClient",
    "Credentials",
    "MemoryTokenStore",
    "RetryPolicy",
    "TokenStore",
    "UncertainWrite",
    "build_bare_client",
    "build_client",
    "map_response_error",
]

log = logging.getLogger("callbridge.http")

#: Request extension: ``True`` marks a POST/PATCH safe to repeat.
IDEMPOTENT = "callbridge_idempotent"
#: Request extension: the purpose bucket (e.g. ``"search"``) this request also draws from.
BUCKET = "callbridge_bucket"
#: Request extension: the units this request takes in its buckets (default: each bucket's ``cost``).
COST = "callbridge_cost"

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Errors after which the request surely never reached the app.
_NOT_SENT = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How the client retries inline.

    ``attempts`` counts the first try. Waits grow from ``base_delay`` to
    ``max_delay`` with jitter; a ``Retry-After`` is waited in full. A wait longer
    than ``inline_max_wait`` is left to the host (:class:`RateLimited`).
    """

    enabled: bool = True
    attempts: int = 4
    inline_max_wait: float = 10.0
    base_delay: float = 0.5
    max_delay: float = 8.0


class UncertainWrite(TransientError):
    """A create/update failed in a way that may have left it done in the app.

    Retryable, but look for the record first (or send the app's idempotency key).
    """


# --- messages -------------------------------------------------------------------


def _describe(request: httpx2.Request) -> str:
    """``METHOD /path``: never the query string or the host's credentials."""
    return redact(f"{request.method} {request.url.path}")


def _app_detail(response: httpx2.Response) -> str:
    """The app's own error type and message, when its body is JSON."""
    try:
        data = response.json()
    except Exception:  # not JSON, or a streamed body not read
        return ""
    if not isinstance(data, dict):
        return ""
    err = data.get("error")
    parts: list[str] = []
    if isinstance(err, dict):  # Clio: {"error": {"type": ..., "message": ...}}
        parts = [str(err.get(k)) for k in ("type", "message") if err.get(k)]
    elif isinstance(err, str):  # OAuth: {"error": ..., "error_description": ...}
        parts = [err] + ([str(data["error_description"])] if data.get("error_description") else [])
    else:  # HubSpot: {"category"/"errorType": ..., "message": ...}; others: message/detail
        kind = data.get("errorType") or data.get("category") or data.get("type")
        text = data.get("message") or data.get("detail") or data.get("title")
        parts = [str(p) for p in (kind, text) if p]
    return ": ".join(parts)[:300]


def map_response_error(response: httpx2.Response) -> AppError | None:
    """The host's exception for an answer, or None for 1xx-3xx.

    401 -> AuthenticationFailed, 404 -> NotFound, 429 -> RateLimited (with
    ``retry_after``), 408 and 5xx -> TransientError, any other 4xx ->
    PermanentError. The message holds the method, the path without the query,
    the status and the app's own error type and message, all redacted.
    """
    status = response.status_code
    if status < 400:
        return None
    try:
        what = _describe(response.request)
    except RuntimeError:  # a response built without a request
        what = "request"
    error = _error_for(response, what)
    # The app's own answer, for a plugin that reads its structure (a batch's refused
    # input, a rate limit's policy). Never part of the message: it may hold data.
    error.status_code = status
    try:
        answer = response.json()
    except Exception:  # not JSON, or a streamed body not read
        answer = None
    error.answer = answer if isinstance(answer, dict) else None
    return error


def _error_for(response: httpx2.Response, what: str) -> AppError:
    status = response.status_code
    detail = _app_detail(response)
    message = f"{what} -> {status} {response.reason_phrase}".rstrip()
    if detail:
        message += f": {detail}"
    message = redact(message)
    if status == 401:
        return AuthenticationFailed(message)
    if status == 404:
        return NotFound(message)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(message, retry_after=retry_after)
    if status == 408 or status >= 500:
        return TransientError(message)
    if status == 403:
        return PermanentError(message + " (the connection may lack a permission in the app)")
    return PermanentError(message)


# --- the client -----------------------------------------------------------------


@dataclass(frozen=True)
class _Limits:
    registry: LimiterRegistry
    plugin: str
    tenant: str
    token_id: str
    buckets: tuple[RateBucket, ...]
    scope: ScopedAuth | None = None  # requests to other origins count in no bucket

    def for_request(self, request: httpx2.Request) -> list[RateBucket]:
        if self.scope is not None and not self.scope.covers(request.url):
            return []
        purpose = request.extensions.get(BUCKET)
        return [b for b in self.buckets if b.purpose == "default" or b.purpose == purpose]

    @staticmethod
    def cost(request: httpx2.Request) -> int | None:
        cost = request.extensions.get(COST)
        return cost if isinstance(cost, int) and cost > 0 else None


class _Retry(Exception):
    """One attempt failed in a way that trying again can fix."""

    def __init__(self, error: AppError, retry_after: float | None, why: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after
        self.why = why


class _BorrowedTransport(httpx2.AsyncBaseTransport):
    """Lends a transport to a second client without letting that client close it."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


class AppClient(httpx2.AsyncClient):
    """``ctx.http``: an :class:`httpx2.AsyncClient` that limits, retries and raises the host's errors.

    Relative URLs are joined to the connection's API origin (``base_url``). The
    connection's credentials and default headers go only to the origins it
    declares for them (:class:`~callbridge.httpauth.ScopedAuth`); a request to
    any other host (a paging link, a storage URL) carries none of them and
    counts in no rate-limit bucket. Built by
    :class:`callbridge.connections.Connections` (and :func:`build_client`);
    plugins use it as a plain httpx2 client
    (``await ctx.http.get("/contacts.json", params=...)``).
    """

    def __init__(self, *, retry: RetryPolicy, limits: _Limits | None = None,
                 closables: Sequence[httpx2.AsyncClient] = (), clock: Clock | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_policy = retry
        self._limits = limits
        self.own_pools: OriginPools | None = None  # closed with the client when not shared
        self._clock: Clock = clock or (limits.registry.clock if limits is not None else SYSTEM)
        self._tickets: dict[int, list[Ticket]] = {}  # by id() of requests in flight
        self._blocked: dict[int, float] = {}  # a 429's wait, as its buckets read it
        if limits is not None:
            # Hooks run for every request put on the wire, the retry after an
            # OAuth refresh included, so each one is counted in its buckets.
            self.event_hooks["request"].append(self._acquire)
            self.event_hooks["response"].append(self._observe)
        self._closables = list(closables)
        self._random = random.Random()
        self._backoff = wait_exponential_jitter(multiplier=retry.base_delay, max=retry.max_delay,
                                                jitter=retry.base_delay)

    @property
    def max_wait(self) -> float:
        """The longest wait (rate-limit room, Retry-After) this client sits through.

        A longer wait raises :class:`~callbridge.errors.RateLimited` with
        ``retry_after``, so the host can park the work as *waiting*.
        """
        return self.retry_policy.inline_max_wait

    @max_wait.setter
    def max_wait(self, seconds: float) -> None:
        self.retry_policy = replace(self.retry_policy, inline_max_wait=seconds)

    def limiter_snapshot(self) -> dict[str, Any]:
        """The rate-limit buckets' state (all of the process's buckets)."""
        return self._limits.registry.snapshot() if self._limits else {}

    async def aclose(self) -> None:
        for client in self._closables:
            await client.aclose()
        await super().aclose()
        if self.own_pools is not None:
            await self.own_pools.aclose()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        backoff = min(float(self._backoff(state)), self.retry_policy.inline_max_wait)
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            # Never before the app's time; a little jitter after it spreads the herd.
            return exc.retry_after + self._random.uniform(0, min(0.1, exc.retry_after * 0.1))
        return backoff

    async def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.upcoming_sleep
        if isinstance(exc, _Retry):
            log.info("retrying %s in %.2fs (attempt %d of %d)", exc.why, wait,
                     state.attempt_number + 1, self.retry_policy.attempts)

    async def _acquire(self, request: httpx2.Request) -> None:
        limits = self._limits
        assert limits is not None
        tickets = self._tickets.setdefault(id(request), [])
        for bucket in limits.for_request(request):
            try:
                tickets.append(await limits.registry.acquire(
                    plugin=limits.plugin, bucket=bucket, tenant=limits.tenant,
                    token_id=limits.token_id, max_wait=self.retry_policy.inline_max_wait,
                    cost=limits.cost(request)))
            except BaseException:
                self._release(request)
                raise

    async def _observe(self, response: httpx2.Response) -> None:
        limits = self._limits
        assert limits is not None
        self._release(response.request)
        blocked = [limits.registry.observe(
            plugin=limits.plugin, bucket=bucket, tenant=limits.tenant, token_id=limits.token_id,
            headers=response.headers, status=response.status_code)
            for bucket in limits.for_request(response.request)]
        waits = [b for b in blocked if b is not None]
        if waits:
            self._blocked[id(response.request)] = max(waits)

    def _release(self, request: httpx2.Request) -> None:
        if self._limits is not None:
            for ticket in self._tickets.pop(id(request), []):
                self._limits.registry.release(ticket)

    async def send(self, request: httpx2.Request, *, stream: bool = False,
                   auth: Any = httpx2.USE_CLIENT_DEFAULT,
                   follow_redirects: Any = httpx2.USE_CLIENT_DEFAULT) -> httpx2.Response:
        """Send with rate limits and retries; raise the host's exception for a failure."""
        safe = request.method in _SAFE_METHODS or request.extensions.get(IDEMPOTENT) is True
        attempts = max(1, self.retry_policy.attempts) if self.retry_policy.enabled else 1
        retrying = AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Retry),
            before_sleep=self._before_sleep,
            sleep=self._clock.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(request, safe=safe, stream=stream, auth=auth,
                                               follow_redirects=follow_redirects)
        except _Retry as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, request: httpx2.Request, *, safe: bool, stream: bool, auth: Any,
                       follow_redirects: Any) -> httpx2.Response:
        what = _describe(request)
        try:
            response = await super().send(request, stream=stream, auth=auth,
                                          follow_redirects=follow_redirects)
        except httpx2.TransportError as exc:
            self._release(request)
            kind = type(exc).__name__
            if isinstance(exc, _NOT_SENT):
                raise _Retry(TransientError(f"{what}: could not reach the app ({kind})"),
                             None, f"{what} after {kind}") from None
            if not safe:
                raise UncertainWrite(
                    f"{what}: {kind}; the request may have reached the app; "
                    "look for the record before retrying") from None
            raise _Retry(TransientError(f"{what}: no answer from the app ({kind})"),
                         None, f"{what} after {kind}") from None
        except BaseException:  # cancelled, or the auth flow failed: the slot is free again
            self._release(request)
            raise
        status = response.status_code
        if status < 400:
            return response
        await response.aread()
        await response.aclose()
        error = map_response_error(response)
        assert error is not None
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        bucket_wait = self._blocked.pop(id(request), None)
        if status == 429 and retry_after is None:
            retry_after = bucket_wait  # what a 429 without Retry-After means for its buckets
        not_processed = status == 429 or (status == 503 and retry_after is not None)
        if status == 429 and _daily_policy(error.answer):
            raise error  # a day's budget: no inline retry can help; the plugin parks the work
        if status in _RETRY_STATUSES and (safe or not_processed):
            if retry_after is not None and retry_after > self.retry_policy.inline_max_wait:
                limited = RateLimited(str(error), retry_after=retry_after)
                limited.status_code, limited.answer = error.status_code, error.answer
                raise limited
            raise _Retry(error, retry_after, f"{what} after {status}")
        if status in _RETRY_STATUSES and not safe:
            raise UncertainWrite(f"{error}; the request may have reached the app; "
                                 "look for the record before retrying")
        raise error


def _daily_policy(answer: dict[str, object] | None) -> bool:
    """Whether a 429's answer names a daily limit (HubSpot: ``"policyName": "DAILY"``)."""
    return bool(answer) and str((answer or {}).get("policyName", "")).upper() == "DAILY"


def credentialed_origins(connection: Connection) -> frozenset[str]:
    """The origins (``scheme://host:port``) that get the connection's credentials."""
    urls = connection.origin_urls()
    return frozenset(origin_of(urls[role]) for role in connection.credentials_to if role in urls)


def build_client(*, tenant: str, app: str, plugin: str, plugin_version: str,
                 connection: Connection, credentials: Credentials,
                 buckets: Sequence[RateBucket], limiters: LimiterRegistry,
                 tokens: TokenStore | None = None, retry: RetryPolicy = RetryPolicy(),
                 transport: httpx2.AsyncBaseTransport | None = None,
                 timeout: float = 30.0, pools: OriginPools | None = None,
                 token_client: httpx2.AsyncClient | None = None) -> AppClient:
    """The app's client for one (tenant, app): what hooks get as ``ctx.http``.

    ``transport`` (e.g. ``httpx2.ASGITransport(app=sandbox)``) is the innermost
    transport, so cassette recorders see the real requests. Otherwise requests
    go through ``pools`` (shared by every tenant; :class:`Connections` passes
    its own), else through pools of this client alone. ``token_client``: the
    plain client OAuth token requests use (shared; made here when not given).
    """
    install_log_redaction()  # httpx2 logs full URLs: never without redaction
    for value in (credentials.api_key, credentials.token, credentials.client_secret):
        register_secret(value)
    headers = {"User-Agent": f"callbridge/{callbridge.__version__} {plugin}/{plugin_version}"}
    auth: httpx2.Auth | None = None
    closables: list[httpx2.AsyncClient] = []
    scoped_headers = dict(connection.headers)  # sent with the credentials, to their origins
    if connection.send_api_key and connection.auth != "api_key":
        if not credentials.api_key:
            raise ConfigError(f"app '{app}' needs an API key in the environment (_API_KEY)")
        scoped_headers[connection.api_key_header] = credentials.api_key
    own_pools: OriginPools | None = None
    if transport is None:
        if pools is None:
            pools = own_pools = OriginPools()
        transport = PooledTransport(pools)
    if connection.auth == "api_key":
        auth = HeaderAuth(connection.api_key_header, credentials.api_key,
                          f"no API key is configured for app '{app}'")
    elif connection.auth == "bearer":
        token = f"Bearer {credentials.token}" if credentials.token else None
        auth = HeaderAuth("Authorization", token, f"no access token is configured for app '{app}'")
    elif connection.auth == "oauth2":
        if connection.oauth2 is None:
            raise ConfigError(f"plugin '{plugin}' declares OAuth 2.0 without its endpoints")
        if tokens is None:
            raise ConfigError(f"app '{app}' uses OAuth 2.0 but the host gave no token store")
        if not credentials.client_id or not credentials.client_secret:
            raise ConfigError(f"app '{app}' needs an OAuth client id and secret in the environment")
        if token_client is None:
            token_client = plain_client(transport, timeout=timeout)
            closables.append(token_client)
        auth = OAuth2Auth(connection.oauth2, tenant=tenant, app=app,
                          client_id=credentials.client_id, client_secret=credentials.client_secret,
                          tokens=tokens, token_client=token_client)
    scoped = ScopedAuth(auth, headers=scoped_headers, origins=credentialed_origins(connection))
    limits = _Limits(limiters, plugin, tenant, token_id(app, connection, credentials),
                     tuple(buckets), scoped)
    client = AppClient(
        retry=retry, limits=limits, closables=closables,
        base_url=connection.base_url, headers=headers, auth=scoped,
        timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
        transport=transport, follow_redirects=False, trust_env=False)
    client.own_pools = own_pools
    return client


def plain_client(transport: httpx2.AsyncBaseTransport, *, timeout: float = 30.0
                 ) -> httpx2.AsyncClient:
    """A plain client on a borrowed transport (OAuth token requests): closing it closes nothing shared."""
    return httpx2.AsyncClient(transport=_BorrowedTransport(transport), timeout=timeout,
                              trust_env=False)


def build_bare_client(*, transport: httpx2.AsyncBaseTransport | None = None,
                      timeout: float = 60.0, retry: RetryPolicy = RetryPolicy(),
                      pools: OriginPools | None = None, clock: Clock | None = None
                      ) -> AppClient:
    """A client with no auth, base URL, default headers or params: for pre-signed URLs.

    Anything the app's client adds would reach the storage host too, leaking
    the token and breaking the signature. Errors are the host's exceptions,
    with the URL's query (the signature) never shown.
    """
    install_log_redaction()
    own_pools: OriginPools | None = None
    if transport is None:
        if pools is None:
            pools = own_pools = OriginPools()
        transport = PooledTransport(pools)
    client = AppClient(retry=retry, timeout=timeout, transport=transport,
                       follow_redirects=False, trust_env=False, clock=clock)
    client.own_pools = own_pools
    return client


#: The former name of :class:`AppClient`.
CallbridgeClient = AppClient
