"""The outbound address policy: where the host may connect on an event's say-so.

A URL that comes from an event (a fax's document, a recording link) or from a
user (an outgoing webhook) is fetched from the host's own network, so it must
not reach the host's neighbours. :func:`check_url` and :class:`GuardedBackend`
apply one rule:

* ``https`` only (unless the policy says otherwise);
* the host on the tenant's allow-list, when the policy has one;
* every address the name resolves to is public: never loopback, private,
  link-local (which holds the cloud metadata service, 169.254.169.254),
  shared (100.64/10), multicast, reserved or unspecified, in IPv4 or IPv6
  (IPv4-mapped and NAT64 forms included); the metadata names
  (``metadata.google.internal``...) are refused by name;
* the connection goes to the address that was checked (the name is resolved
  once, by the guard), so DNS cannot answer differently the second time.

Tests and sandboxes reach loopback only through a policy that a sandbox
registers for its own origin in the ``callbridge.testing_address_policies``
entry point group (see :mod:`callbridge.testing.addresses`); no setting can
open it.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore2
import httpx2

from callbridge.errors import PermanentError, TransientError

__all__ = [
    "POLICY_GROUP",
    "AddressPolicy",
    "AddressRefused",
    "GuardedBackend",
    "check_address",
    "check_outbound",
    "check_url",
    "guarded_transport",
]

log = logging.getLogger("callbridge.outbound")

#: Entry points whose objects are callables ``(url: httpx2.URL) -> bool``: True lets
#: that URL's origin reach loopback over plain http (a test's sandbox). Test-only.
POLICY_GROUP = "callbridge.testing_address_policies"

_METADATA_NAMES = frozenset({"metadata.google.internal", "metadata", "metadata.azure.com",
                             "instance-data", "instance-data.ec2.internal"})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")

Resolver = Callable[[str, int], Awaitable[list[str]]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(PermanentError):
    """The URL or an address it resolves to is not one the host may connect to."""

    code = "address_refused"


class ResolveFailed(TransientError):
    """The name did not resolve (it may later)."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@functools.cache
def _sandbox_policies() -> tuple[Callable[[httpx2.URL], bool], ...]:
    out = []
    for ep in importlib.metadata.entry_points(group=POLICY_GROUP):
        try:
            out.append(ep.load())
        except Exception as exc:  # a broken test package must not open anything
            log.warning("address policy %s did not load: %s", ep.name, type(exc).__name__)
    return tuple(out)


@dataclass(frozen=True)
class AddressPolicy:
    """Where an outbound fetch may go.

    ``allowed_hosts``: host names (``files.example.com``) or suffixes
    (``*.example.com``); None allows any public host, an empty set none.
    """

    https_only: bool = True
    allowed_hosts: frozenset[str] | None = None
    resolver: Resolver = system_resolver
    sandboxes: tuple[Callable[[httpx2.URL], bool], ...] = field(
        default_factory=_sandbox_policies)

    def is_sandbox(self, url: httpx2.URL) -> bool:
        return any(_asks(policy, url) for policy in self.sandboxes)

    def host_allowed(self, host: str) -> bool:
        if self.allowed_hosts is None:
            return True
        host = host.lower().rstrip(".")
        for allowed in self.allowed_hosts:
            allowed = allowed.lower().rstrip(".")
            if host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:])):
                return True
        return False


def _asks(policy: Callable[[httpx2.URL], bool], url: httpx2.URL) -> bool:
    try:
        return policy(url) is True
    except Exception:
        return False


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return _public(mapped)
        if address in _NAT64:
            return _public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
        return False
    return not (address.is_loopback or address.is_private or address.is_link_local
                or address.is_multicast or address.is_reserved or address.is_unspecified
                or not address.is_global)


def check_address(address: str, *, sandbox: bool = False) -> Address:
    """The address, if the host may connect to it; else :class:`AddressRefused`.

    ``sandbox``: the URL's origin is a registered test sandbox, which may be on loopback.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        raise AddressRefused("the address is not an IP address") from None
    if sandbox and ip.is_loopback:
        return ip
    if not _public(ip):
        raise AddressRefused("the URL leads to an address the host does not fetch from "
                             "(loopback, private, link-local or reserved)")
    return ip


def check_url(url: str | httpx2.URL, policy: AddressPolicy) -> httpx2.URL:
    """The URL, parsed, if its scheme and host pass ``policy`` (addresses are checked on connect)."""
    try:
        parsed = url if isinstance(url, httpx2.URL) else httpx2.URL(url)
    except Exception:
        raise AddressRefused("the URL cannot be read") from None
    sandbox = policy.is_sandbox(parsed)
    if parsed.scheme not in ("https", "http") or (parsed.scheme == "http" and policy.https_only
                                                 and not sandbox):
        raise AddressRefused("only https URLs are fetched")
    if not parsed.host or parsed.userinfo:
        raise AddressRefused("the URL has no host, or carries a user name")
    host = parsed.host.lower().rstrip(".")
    if host in _METADATA_NAMES or host.endswith(".internal"):
        raise AddressRefused("the URL names a metadata or internal host")
    if not sandbox and not policy.host_allowed(host):
        raise AddressRefused("the URL's host is not on the tenant's list of document hosts")
    return parsed


async def resolve_checked(host: str, port: int, policy: AddressPolicy, *,
                          sandbox: bool) -> list[str]:
    """Every address ``host`` resolves to, all checked; refused if any one is not allowed."""
    try:
        ipaddress.ip_address(host)
        addresses = [host]
    except ValueError:
        try:
            addresses = await policy.resolver(host, port)
        except OSError:
            raise ResolveFailed("the URL's host name did not resolve") from None
    if not addresses:
        raise ResolveFailed("the URL's host name did not resolve")
    for address in addresses:
        check_address(address, sandbox=sandbox)
    return addresses


async def check_outbound(url: str | httpx2.URL, policy: AddressPolicy) -> httpx2.URL:
    """Check a URL fully before it is kept (a recording link, an outgoing webhook's URL).

    The scheme and host by :func:`check_url`, and every address the name
    resolves to now. A fetch later must still go through :func:`guarded_transport`,
    which checks again at connect time (DNS may have changed since).
    """
    parsed = check_url(url, policy)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    await resolve_checked(parsed.host, port, policy, sandbox=policy.is_sandbox(parsed))
    return parsed


class GuardedBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's network backend, connecting only to addresses the policy allows.

    The name is resolved here, once; the socket connects to the checked address,
    while TLS still verifies the certificate against the URL's host name.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._inner = httpcore2.AnyIOBackend()
        self.connected: list[str] = []  # the addresses connected to, for diagnostics

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None
                          ) -> httpcore2.AsyncNetworkStream:
        named = f"[{host}]" if ":" in host and not host.startswith("[") else host  # IPv6
        sandbox = any(self.policy.is_sandbox(httpx2.URL(f"{scheme}://{named}:{port}/"))
                      for scheme in ("http", "https"))
        addresses = await resolve_checked(host, port, self.policy, sandbox=sandbox)
        self.connected.append(addresses[0])
        return await self._inner.connect_tcp(addresses[0], port, timeout=timeout,
                                             local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: Iterable[Any] | None = None
                                  ) -> httpcore2.AsyncNetworkStream:
        raise AddressRefused("unix sockets are not fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(policy: AddressPolicy, *, backend: GuardedBackend | None = None,
                      limits: httpx2.Limits | None = None) -> httpx2.AsyncHTTPTransport:
    """An httpx2 transport whose every connection passes ``policy`` (no proxy, no redirects)."""
    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    limits = limits or httpx2.Limits(max_connections=16, keepalive_expiry=10.0)
    # The pool is made again with the guard as its network backend (httpx2 has no
    # parameter for it); the TLS context is httpx2's own.
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=httpx2.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend or GuardedBackend(policy))
    return transport
