"""Connection pools, one per origin, shared by every tenant of the process.

Every ``ctx.http`` of every tenant sends through one :class:`OriginPools`: one
TLS context for the process (the CA bundle is loaded once, on the first
``https`` origin) and one connection pool per origin (``scheme://host:port``),
so 1,000 firms connected to one app share one pool of keep-alive connections.
Credentials are added per request (:class:`callbridge.httpauth.ScopedAuth`),
never held by a pool.

A proxy from the environment (``HTTPS_PROXY``/``HTTP_PROXY``, with ``NO_PROXY``)
is read once, when the pools are made.
"""

from __future__ import annotations

import ssl
import threading
import urllib.request

import httpx2

from callbridge.httpauth import origin_of

__all__ = ["OriginPools", "PooledTransport"]

#: Per origin: enough for a busy app; requests beyond it queue for a connection.
DEFAULT_LIMITS = httpx2.Limits(max_connections=64, max_keepalive_connections=32,
                               keepalive_expiry=30.0)

def _default_transport(context: ssl.SSLContext | None, proxy: str | None,
                       limits: httpx2.Limits) -> httpx2.AsyncHTTPTransport:
    return httpx2.AsyncHTTPTransport(verify=context if context is not None else True,
                                     trust_env=False, limits=limits, proxy=proxy)


class OriginPools:
    """One TLS context and one pool per origin; ``len()`` counts the pools."""

    def __init__(self, *, limits: httpx2.Limits = DEFAULT_LIMITS,
                 ssl_context: ssl.SSLContext | None = None, trust_env: bool = True) -> None:
        self._limits = limits
        self._ssl = ssl_context
        self._pools: dict[str, httpx2.AsyncHTTPTransport] = {}
        self._lock = threading.Lock()
        self._proxies = urllib.request.getproxies_environment() if trust_env else {}
        self.tls_contexts_made = 0

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = httpx2.create_ssl_context()
            self.tls_contexts_made += 1
        return self._ssl

    def _proxy_for(self, url: httpx2.URL) -> str | None:
        proxy = self._proxies.get(url.scheme)
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if proxy and not bypass(url.host, self._proxies):
            return proxy
        return None

    def transport_for(self, url: httpx2.URL) -> httpx2.AsyncHTTPTransport:
        """The pool for ``url``'s origin, made on first use."""
        origin = origin_of(url)
        pool = self._pools.get(origin)
        if pool is None:
            with self._lock:
                pool = self._pools.get(origin)
                if pool is None:
                    context = self._context() if url.scheme == "https" else None
                    pool = _default_transport(context, self._proxy_for(url), self._limits)
                    self._pools[origin] = pool
        return pool

    def origins(self) -> list[str]:
        return sorted(self._pools)

    def __len__(self) -> int:
        return len(self._pools)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class PooledTransport(httpx2.AsyncBaseTransport):
    """Routes each request to its origin's shared pool; closing it closes nothing shared."""

    def __init__(self, pools: OriginPools) -> None:
        self.pools = pools

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self.pools.transport_for(request.url).handle_async_request(request)

    async def aclose(self) -> None:
        return None
