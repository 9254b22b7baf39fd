"""The host's services behind ``ctx.delivery``, ``ctx.cache`` and ``ctx.lock``, kept
in the ledger so they hold across processes (see docs/writing-a-plugin.md).

* :class:`LedgerDelivery` — the write protocol: ``step(kind, key, find=, create=)``.
* :class:`LedgerCache` — ``get_or_load(key, loader, ttl=)``: JSON values per (tenant,
  app), one load at a time per key across processes.
* :class:`LedgerLocks` — ``lock(name)``: a ledger lock per (tenant, app, name),
  renewed while held, with the fencing token it was taken with.

Every ledger call goes through one :class:`Gateway` (``await gw.run(fn, *args)``), so
no ledger work runs on the event loop. Waiting for a held lock is done here, on the
injected clock, never by blocking the gateway's thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from callbridge.clock import SYSTEM, Clock
from callbridge.context import find_record
from callbridge.errors import CallbridgeError
from callbridge.ledger import DuplicateRecord
from callbridge.models import Record
from callbridge.ratelimit import priority

log = logging.getLogger("callbridge.services")
T = TypeVar("T")

#: A lock's lifetime in the ledger; renewed every third of it while held.
LOCK_TTL = 30.0
#: How long ``ctx.lock`` waits for a lock another holder keeps.
LOCK_WAIT = 120.0
#: Between two tries for a held lock.
LOCK_POLL = 0.05


class Gateway(Protocol):
    """One way into the (synchronous) ledger from async code."""

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T: ...


class LockTimeout(CallbridgeError, TimeoutError):
    """A ledger lock stayed held by another process for longer than the wait allowed."""


# --- the write protocol -------------------------------------------------------------


class LedgerDelivery:
    """``ctx.delivery`` for one claimed delivery (see :meth:`step`)."""

    def __init__(self, gw: Gateway, ledger: Any, claim: Any, marker: str) -> None:
        self._gw, self._ledger, self.claim = gw, ledger, claim
        self.marker = marker
        self._records = list(claim.records)
        self._begun: set[tuple[str, str]] = set(getattr(claim, "begun", ()) or ())
        #: True once this attempt has begun writing (the worker raises its priority).
        self.writing = False

    @property
    def records(self) -> tuple[Record, ...]:
        return tuple(self._records)

    @property
    def attempt(self) -> int:
        return int(self.claim.attempt)

    @property
    def first_attempt_at(self) -> datetime:
        first: datetime = self.claim.first_attempt_at
        return first

    async def step(self, kind: str, key: str, *, create: Callable[[], Awaitable[str]],
                   find: Callable[[], Awaitable[str | None]] | None = None) -> Record:
        """One record of the log, written at most once across attempts.

        1. a record (kind, key) already kept: returned, nothing sent;
        2. an earlier attempt began this step without keeping its result (an
           uncertain write): ``find()`` runs first; found -> kept and returned;
        3. else "step begun" is written to the ledger, ``create()`` runs and its
           id is kept at once (fenced) and returned.
        """
        kept = find_record(self.records, kind, key)
        if kept is not None:
            return kept
        if find is not None and await self._was_begun(kind, key):
            found = await find()
            if found is not None:
                return await self._keep(Record(kind=kind, id=str(found), step=key))
        await self._begin(kind, key)
        created = await create()
        return await self._keep(Record(kind=kind, id=str(created), step=key))

    async def remember(self, record: Record) -> None:
        """Keep a record learnt otherwise (fenced). The same one again is a no-op."""
        await self._keep(record)

    def _writing(self) -> None:
        # From here on this delivery's requests go before new lookups.
        self.writing = True
        priority.set(max(priority.get(), 1))

    async def _keep(self, record: Record) -> Record:
        kept = find_record(self.records, record.kind, record.step)
        if kept is not None:
            if kept.id != record.id:
                raise DuplicateRecord(
                    f"delivery {self.claim.delivery_id}: a second {record.kind} record for "
                    f"step {record.step!r}")
            return kept
        self._writing()
        await self._gw.run(self._ledger.remember, self.claim, record)
        self._records.append(record)
        return record

    async def _was_begun(self, kind: str, key: str) -> bool:
        # Claim.begun: the steps earlier attempts began (read when the claim was made).
        return (kind, key) in self._begun

    async def _begin(self, kind: str, key: str) -> None:
        self._writing()
        if (kind, key) not in self._begun:
            await self._gw.run(self._ledger.begin_step, self.claim, kind, key)
            self._begun.add((kind, key))


# --- locks --------------------------------------------------------------------------


@dataclass
class HeldLock:
    """What ``async with ctx.lock(name) as held`` gives: the fencing token it holds."""

    name: str
    fence: int
    handle: Any = field(repr=False, default=None)
    lost: bool = False
    #: Whether another holder had it first (in this process or another one).
    waited: bool = False
    #: Set after each renewal (for monitoring, and for tests that move a fake clock).
    renewed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


class LedgerLocks:
    """Ledger locks per (tenant, app, name), renewed while held."""

    def __init__(self, gw: Gateway, ledger: Any, clock: Clock = SYSTEM, *,
                 ttl: float = LOCK_TTL, wait: float = LOCK_WAIT) -> None:
        self._gw, self._ledger, self._clock = gw, ledger, clock
        self.ttl, self.wait = ttl, wait
        # One holder per name in this process at a time: the others queue here, not
        # in the ledger.
        self._local: dict[str, asyncio.Lock] = {}

    @staticmethod
    def _ledger_name(tenant: str, app: str, name: str) -> str:
        return f"{tenant}\x1f{app}\x1f{name}"  # the ledger keeps a keyed hash of it

    def for_app(self, tenant: str, app: str) -> Callable[[str], Any]:
        def lock(name: str) -> Any:
            return self.hold(tenant, app, name)
        return lock

    @asynccontextmanager
    async def hold(self, tenant: str, app: str, name: str) -> AsyncIterator[HeldLock]:
        key = self._ledger_name(tenant, app, name)
        local = self._local.setdefault(key, asyncio.Lock())
        contended = local.locked()
        async with local:
            held = await self._acquire(key)
            held.waited = held.waited or contended
            renewer = asyncio.create_task(self._renew(held))
            try:
                yield held
            finally:
                renewer.cancel()
                await self._release(held)

    async def _acquire(self, key: str) -> HeldLock:
        deadline = self._clock.monotonic() + self.wait
        tries = 0
        while True:
            tries += 1
            handle = await self._gw.run(self._ledger.try_lock, key, ttl=self.ttl)
            if handle is not None:
                return HeldLock(key, int(handle.fence), handle, waited=tries > 1)
            if self._clock.monotonic() >= deadline:
                raise LockTimeout(f"a lock of this app stayed held by another process "
                                  f"for {self.wait:g} s")
            await self._clock.sleep(LOCK_POLL)

    async def _renew(self, held: HeldLock) -> None:
        while True:
            await self._clock.sleep(self.ttl / 3)
            try:
                await self._gw.run(self._ledger.renew_lock, held.handle, self.ttl)
            except Exception as exc:  # LockLost, or the database is away
                held.lost = True
                log.warning("lock renewal failed (%s); writes fenced by it will be refused",
                            type(exc).__name__)
                return
            held.renewed.set()

    async def _release(self, held: HeldLock) -> None:
        try:
            await self._gw.run(self._ledger.release_lock, held.handle)
        except Exception as exc:  # it expires on its own
            log.warning("lock release failed (%s)", type(exc).__name__)


# --- the cache ----------------------------------------------------------------------


class LedgerCache:
    """``ctx.cache`` for one (tenant, app): JSON values in the ledger, encrypted."""

    def __init__(self, gw: Gateway, ledger: Any, locks: LedgerLocks, tenant: str, app: str,
                 clock: Clock = SYSTEM) -> None:
        self._gw, self._ledger, self._locks = gw, ledger, locks
        self.tenant, self.app, self._clock = tenant, app, clock
        self._loading: dict[str, asyncio.Lock] = {}

    async def get_or_load(self, key: str, loader: Callable[[], Awaitable[Any]], *,
                          ttl: float) -> Any:
        """The value kept for ``key`` if fresh, else ``await loader()`` kept for ``ttl`` s.

        One load at a time per key: concurrent callers in this process wait for the
        first, other processes for the ledger lock ``cache:<key>``.
        """
        found, value = await self._get(key)
        if found:
            return value
        local = self._loading.setdefault(key, asyncio.Lock())
        async with local:
            found, value = await self._get(key)
            if found:
                return value
            async with self._locks.hold(self.tenant, self.app, f"cache:{key}"):
                found, value = await self._get(key)
                if found:
                    return value
                # As JSON gives it back (tuples as lists): the first time as every time after.
                return json.loads(await self._put(key, await loader(), ttl))

    async def invalidate(self, key: str) -> None:
        """Forget ``key``: the next :meth:`get_or_load` loads it again."""
        await self._gw.run(self._ledger.cache_delete, self.tenant, self.app, key)

    async def _get(self, key: str) -> tuple[bool, Any]:
        row = await self._gw.run(self._ledger.cache_get, self.tenant, self.app, key,
                                 now=self._clock.now())
        if row is None:
            return False, None
        return True, json.loads(row[0])

    async def _put(self, key: str, value: Any, ttl: float) -> str:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            raise TypeError("ctx.cache: the loader's value is not JSON-serialisable "
                            f"({type(value).__name__})") from None
        await self._gw.run(self._ledger.cache_put, self.tenant, self.app, key, text,
                           ttl, now=self._clock.now())
        return text
