"""The contract kit's host services: a delivery with the write protocol, cache, locks, traffic.

What the kit puts in a hook's context where the host would put its own
ledger-backed services.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2

from callbridge.context import find_record
from callbridge.models import Record
from callbridge.testing.clock import FakeClock

__all__ = ["KitDelivery", "KitDocuments", "MemoryCache", "Traffic", "memory_locks"]

_UPDATES = frozenset({"PUT", "PATCH", "DELETE"})


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _is_write(request: httpx2.Request, response: httpx2.Response) -> bool:
    """A create (a POST answered 201, 202 or 207) or an update; a POST answered 200 is a search."""
    if request.method == "POST":
        return response.status_code in (201, 202, 207)
    return request.method in _UPDATES


class KitDelivery:
    """One attempt of one delivery, with the host's write protocol.

    :meth:`step` returns the record an earlier attempt kept; else, when an
    earlier attempt began the step without keeping its answer, runs ``find``;
    else runs ``create`` and keeps the id at once. :meth:`next_attempt` is the
    retry: attempt + 1, the same first attempt time, the records and begun
    steps this attempt left.
    """

    def __init__(self, *, marker: str, first_attempt_at: datetime, attempt: int = 1,
                 records: tuple[Record, ...] = (),
                 begun: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.marker = marker
        self.first_attempt_at = first_attempt_at
        self.attempt = attempt
        self.kept: list[Record] = list(records)
        self.begun: set[tuple[str, str]] = set(begun)
        self.found: list[Record] = []  # kept through find(): what a retry recovered

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self.kept)

    async def remember(self, record: Record) -> None:
        earlier = find_record(self.records, record.kind, record.step)
        if earlier is not None and earlier.id != record.id:
            raise AssertionError(f"a second {record.kind} record for step {record.step!r}: "
                                 f"{earlier.id} was kept, {record.id} is new; a duplicate")
        if earlier is None:
            self.kept.append(record)

    async def step(self, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
                   find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
        kept = find_record(self.records, kind, key)
        if kept is not None:
            return kept
        if (kind, key) in self.begun and find is not None:
            found = await find()
            if found is not None:
                record = Record(kind=kind, id=found, step=key)
                self.found.append(record)
                await self.remember(record)
                return record
        self.begun.add((kind, key))
        record = Record(kind=kind, id=await create(), step=key)
        await self.remember(record)
        return record

    def next_attempt(self) -> KitDelivery:
        return KitDelivery(marker=self.marker, first_attempt_at=self.first_attempt_at,
                           attempt=self.attempt + 1, records=self.records,
                           begun=frozenset(self.begun))


class MemoryCache:
    """``ctx.cache`` in memory: one load per key, values as the loader returned them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.values: dict[str, tuple[Any, float]] = {}
        self.loads = 0

    async def get_or_load(self, key: str, loader: Callable[[], Awaitable[Any]], *,
                          ttl: float) -> Any:
        held = self.values.get(key)
        if held is not None and held[1] > self.clock.monotonic():
            return held[0]
        self.loads += 1
        value = await loader()
        json.dumps(value)  # the host keeps JSON only; fail here as it would
        self.values[key] = (value, self.clock.monotonic() + ttl)
        return value

    async def invalidate(self, key: str) -> None:
        self.values.pop(key, None)


def memory_locks() -> Callable[[str], AbstractAsyncContextManager[None]]:
    """``ctx.lock`` in memory, per name."""
    held: dict[str, asyncio.Lock] = {}

    @asynccontextmanager
    async def lock(name: str) -> AsyncIterator[None]:
        async with held.setdefault(name, asyncio.Lock()):
            yield

    return lock


class Traffic(httpx2.AsyncBaseTransport):
    """Every request a case sends, as ``METHOD /path``; may lose one write's answer.

    When :attr:`lose` is set, the first write that carries one of its
    ``markers`` (in its URL or body) reaches the cassette (it is recorded, or
    its recording is matched) and then its answer is dropped: the client sees
    a read timeout, as when a network fails after the app did the work. A
    write is a POST answered 201, 202 or 207 (a create; a POST answered 200 is taken
    for a search), or any PUT, PATCH or DELETE. :attr:`lost` holds that
    request and the dropped body.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.lose: tuple[str, ...] | None = None
        self.sent: list[str] = []
        self.lost: tuple[str, bytes] | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        what = f"{request.method} {request.url.path}"
        self.sent.append(what)
        response = await self.inner.handle_async_request(request)
        if self.lose is not None and self.lost is None and _is_write(request, response):
            text = str(request.url) + request.content.decode("utf-8", "replace")
            if any(m in text or m in _digits(text) for m in self.lose):
                body = await response.aread()
                self.lost = (what, body)
                raise httpx2.ReadTimeout("the contract kit dropped this answer", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True)
class KitDocument:
    """What ``ctx.documents.fetch`` returns in the kit: the bytes, their type, a file name."""

    content: bytes
    content_type: str
    filename: str | None = None


class KitDocuments:
    """``ctx.documents`` in the kit: an event's inline document, as the host hands it over.

    The kit's sample fax carries its document inline; a document given only by
    URL is refused here (the host fetches URLs under its address policy, which
    a contract case cannot record), so give your scenarios' faxes inline content.
    """

    async def fetch(self, doc: Any) -> Any:
        content = getattr(doc, "content", None)
        if content is None:
            raise AssertionError("the kit hands over inline documents only: give the scenario's "
                                 "fax a document with content")
        # The host's own type, where this host has it.
        host = importlib.util.find_spec("callbridge.documents")
        document: Any = importlib.import_module("callbridge.documents").Document if host \
            else KitDocument
        return document(content=content, content_type=doc.content_type, filename=doc.filename)
