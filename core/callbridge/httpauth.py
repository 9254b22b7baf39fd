"""Credentials on the wire: what a connection sends, and only to its own origins.

:class:`ScopedAuth` wraps a connection's credential (a header, a static token or
OAuth 2.0) and its default headers: it adds them to a request only when the
request's origin is one the connection declares for them (its API origin by
default). A paging link or a redirect target on another host gets none of them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2

from callbridge.capabilities import Connection
from callbridge.errors import AuthenticationFailed
from callbridge.redact import register_secret

__all__ = [
    "Credentials",
    "HeaderAuth",
    "MemoryTokenStore",
    "ScopedAuth",
    "TokenStore",
    "origin_of",
    "token_id",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: httpx2.URL | str) -> str:
    """``scheme://host:port`` of ``url`` (the port always written, lower-case host)."""
    u = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
    port = u.port or _DEFAULT_PORTS.get(u.scheme, 0)
    return f"{u.scheme}://{u.host.lower()}:{port}"


class TokenStore(Protocol):
    """Where OAuth tokens live. The ledger provides ``LedgerTokenStore`` (encrypted).

    ``refresh_lock`` serialises refreshes of one (tenant, app), across processes
    when the store is shared.
    """

    async def load(self, tenant: str, app: str) -> dict[str, Any] | None: ...
    async def save(self, tenant: str, app: str, token: Mapping[str, Any]) -> None: ...
    def refresh_lock(self, tenant: str, app: str) -> AbstractAsyncContextManager[None]: ...


class MemoryTokenStore:
    """A :class:`TokenStore` in memory, for tests and the demo (one process only)."""

    def __init__(self, tokens: Mapping[tuple[str, str], Mapping[str, Any]] | None = None) -> None:
        self._tokens: dict[tuple[str, str], dict[str, Any]] = {
            key: dict(value) for key, value in (tokens or {}).items()}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.saves: list[tuple[str, str]] = []  # what was saved, in order (for tests)

    async def load(self, tenant: str, app: str) -> dict[str, Any] | None:
        token = self._tokens.get((tenant, app))
        return dict(token) if token is not None else None

    async def save(self, tenant: str, app: str, token: Mapping[str, Any]) -> None:
        self._tokens[(tenant, app)] = dict(token)
        self.saves.append((tenant, app))

    @asynccontextmanager
    async def _locked(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            yield

    def refresh_lock(self, tenant: str, app: str) -> AbstractAsyncContextManager[None]:
        return self._locked((tenant, app))


@dataclass(frozen=True)
class Credentials:
    """The secrets of one connection, from the environment (never from a plugin)."""

    api_key: str | None = None
    token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None

    def __repr__(self) -> str:  # never print a secret, even in a debugger dump
        present = [name for name in ("api_key", "token", "client_id", "client_secret")
                   if getattr(self, name)]
        return f"Credentials(set={present})"


def token_id(app: str, connection: Connection, credentials: Credentials) -> str:
    """A stable, non-secret id of the connection's credential, for per-token buckets."""
    secret = {"api_key": credentials.api_key, "bearer": credentials.token}.get(connection.auth)
    if secret:
        return f"{app}:{hashlib.sha256(secret.encode()).hexdigest()[:12]}"
    return f"{app}:{connection.auth}"


class HeaderAuth(httpx2.Auth):
    """A static credential in one header, or a clear failure when it is missing."""

    def __init__(self, header: str, value: str | None, missing: str) -> None:
        self._header = header
        self._value = value
        self._missing = missing
        register_secret(value)

    async def async_auth_flow(self, request: httpx2.Request
                              ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if not self._value:
            raise AuthenticationFailed(self._missing)
        request.headers[self._header] = self._value
        yield request


class ScopedAuth(httpx2.Auth):
    """The connection's credential and default headers, for its own origins only.

    ``origins`` holds :func:`origin_of` values. A request to any other origin
    goes out as the plugin built it: no credential, no default header.
    """

    def __init__(self, inner: httpx2.Auth | None, *, headers: Mapping[str, str],
                 origins: Iterable[str]) -> None:
        self.inner = inner
        self.headers = dict(headers)
        self.origins = frozenset(origins)

    def covers(self, url: httpx2.URL) -> bool:
        return origin_of(url) in self.origins

    async def async_auth_flow(self, request: httpx2.Request
                              ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if not self.covers(request.url):
            yield request
            return
        for name, value in self.headers.items():
            if name not in request.headers:
                request.headers[name] = value
        if self.inner is None:
            yield request
            return
        flow = self.inner.async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return

    def sync_auth_flow(self, request: httpx2.Request) -> Any:  # pragma: no cover
        raise RuntimeError("the host builds async clients only; use ctx.sync.http")
