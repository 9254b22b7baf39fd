"""The source adapter interface, and finding an adapter by its format name.

``callbridge serve`` hands each request to ``POST /v1/sources/{tenant}/{source}`` to the
adapter the source's settings name (``[tenants.T.sources.S] format = "..."``):

1. :meth:`SourceAdapter.verify` checks the request is the vendor's (its signature, with
   the source's keys: two during a rotation), raising :class:`SourceRefused` (401);
2. :meth:`SourceAdapter.parse` turns the body into events of the URL's tenant, raising
   :class:`SourceRefused` (400, 403, 422) for a body that cannot be taken. The tenant
   always comes from the authenticated source: a body naming another tenant is refused
   (403), never trusted.

A refused request is answered with a 4xx JSON error naming the field and the problem,
and kept in the quarantine; nothing of it is processed. An adapter never sees the
server, the ledger or the network: it is pure, so it is tested with sample payloads.
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from callbridge.errors import ConfigError
from callbridge.events import AnyEvent
from callbridge.settings import TenantSettings

__all__ = ["GROUP", "SourceAdapter", "SourceRefused", "SourceRequest", "formats", "load_adapter"]

#: The entry point group of source adapters.
GROUP = "callbridge.sources"


@dataclass(frozen=True)
class SourceRequest:
    """One request to a source's URL, as received."""

    headers: Mapping[str, str]
    """Header names in lower case."""
    body: bytes
    url: str
    """The URL the sender used (``serve.public_url`` joined to the path and query)."""
    received_at: datetime
    source: str = "default"
    """The source's key in the tenant's settings (the URL's last part)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The source's ``options`` from the settings."""
    replay_window: float = 300.0
    """Seconds a signed time may be away from ``received_at`` (formats that sign one)."""


class SourceRefused(Exception):
    """A request the adapter will not take: answered ``status`` with a JSON error
    naming ``field`` and ``problem`` (never a value received), and quarantined."""

    def __init__(self, status: int, field: str, problem: str,
                 problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(f"{field}: {problem}")
        self.status = status
        self.field = field
        self.problem = problem
        #: Every (field, problem) when there are several (an invalid event's fields).
        self.problems = tuple(problems) or ((field, problem),)


@runtime_checkable
class SourceAdapter(Protocol):
    """One phone system's webhook format."""

    name: str

    def verify(self, request: SourceRequest, secrets: Sequence[str], now: datetime) -> None:
        """Raise :class:`SourceRefused` (401) unless the request is signed by one of
        ``secrets`` (the current key, then the one being rotated out)."""
        ...

    def parse(self, request: SourceRequest, tenant: str,
              tenant_settings: TenantSettings) -> list[AnyEvent]:
        """The request's events, all of ``tenant``; raise :class:`SourceRefused` for a
        body that cannot be taken (403 when it names another tenant). An empty list is a
        request acknowledged with nothing to store (a vendor's test ping)."""
        ...


_lock = threading.Lock()
_cache: dict[str, SourceAdapter] = {}


def formats() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed adapters' entry points, by format name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def load_adapter(name: str) -> SourceAdapter:
    """The adapter for format ``name`` (made once per process); :class:`ConfigError`
    when none is installed or it does not load."""
    with _lock:
        adapter = _cache.get(name)
        if adapter is not None:
            return adapter
        ep = formats().get(name)
        if ep is None:
            raise ConfigError(f"no source adapter for format {name!r} is installed "
                              f"(installed: {', '.join(sorted(formats())) or 'none'})")
        try:
            made = ep.load()()
        except Exception as exc:
            raise ConfigError(f"the source adapter {name!r} did not load "
                              f"({type(exc).__name__})") from None
        if not isinstance(made, SourceAdapter):
            raise ConfigError(f"the source adapter {name!r} lacks verify() or parse()")
        _cache[name] = made
        return made
