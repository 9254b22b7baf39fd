"""The async side of the ledger: one gateway (one executor) every coroutine goes
through, and what the hook context is built from: ``ctx.store``, ``ctx.cache``,
``ctx.lock`` and the OAuth token store.

The ledger itself is synchronous (SQLAlchemy Core on a thread); async code never
calls it directly, only through :class:`LedgerGateway`, so there is one place
to size, measure or later replace (group commit, an async driver).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from callbridge.events import AnyEvent
from callbridge.ledger.types import Claim, IndexEntry, LockHandle, LockLost, Stored
from callbridge.models import Outcome, Record

if TYPE_CHECKING:
    from callbridge.ledger import Ledger

P = ParamSpec("P")
T = TypeVar("T")
_POLL = 0.05  # seconds between tries for a held lock
#: The ledger's writes that may go to its group-commit writer (Ledger.hot_job).
HOT_WRITES = frozenset({"claim", "begin_step", "remember", "finish"})


class LedgerGateway:
    """The one async entry to a :class:`~callbridge.ledger.Ledger`: ``await gw.run(fn, *a)``
    runs a ledger call on the gateway's executor; the hot calls have typed wrappers."""

    def __init__(self, ledger: Ledger, *, workers: int = 4) -> None:
        self.ledger = ledger
        self.clock = ledger.clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="callbridge-ledger")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on the ledger's executor.

        The hot writes (``begin_step``, ``remember``, ``finish``) of a ledger with a
        group-commit writer (a SQLite file) go straight to that writer: no executor
        thread in between, and the caller resumes once its group has committed.
        """
        if getattr(fn, "__self__", None) is self.ledger and fn.__name__ in HOT_WRITES:
            job = self.ledger.hot_job(fn.__name__, *args, **kwargs)
            if job is not None and self.ledger._hot is not None:
                result: T = await self.ledger._hot.write(job)
                return result
        if getattr(fn, "__self__", None) is self.ledger and fn.__name__ == "store_events" \
                and self.ledger._hot is not None:
            stored: Any = await self._store_events(*args, **kwargs)  # type: ignore[arg-type]
            return stored  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def _store_events(self, events: Sequence[tuple[AnyEvent, Sequence[str]]], *,
                            hold_until: Sequence[datetime | None] | None = None) -> list[Stored]:
        """``Ledger.store_events`` with the new events written in groups on the loop; the
        ones known already (duplicates, revisions) through the executor, in order."""
        ledger, hot = self.ledger, self.ledger._hot
        assert hot is not None
        holds = list(hold_until) if hold_until is not None else [None] * len(events)
        now = ledger.clock.now()
        pks = await hot.write_many([ledger._store_new_job(event, apps, now)
                                    for event, apps in events])
        out: list[Stored] = []
        for (event, apps), hold, pk in zip(events, holds, pks, strict=True):
            if pk is not None:
                out.append(Stored(event_pk=int(pk), status="new", revision=1, event=event))
            else:
                out.append(await self.run(ledger.store_event, event, apps=apps, hold_until=hold))
        return out

    def close(self) -> None:
        """Stop taking work (calls already running finish)."""
        self._pool.shutdown(wait=False)

    # Events and deliveries.
    async def store_event(self, event: AnyEvent, *, apps: Sequence[str],
                          received_at: datetime | None = None) -> Stored:
        return await self.run(self.ledger.store_event, event, apps=apps, received_at=received_at)

    async def load_event(self, event_pk: int) -> AnyEvent:
        return await self.run(self.ledger.load_event, event_pk)

    async def claim(self, **kwargs: Any) -> list[Claim]:
        return await self.run(self.ledger.claim, **kwargs)

    async def renew(self, claim: Claim, lease_seconds: float) -> None:
        await self.run(self.ledger.renew, claim, lease_seconds)

    async def begin_step(self, claim: Claim, kind: str, key: str) -> None:
        await self.run(self.ledger.begin_step, claim, kind, key)

    async def remember(self, claim: Claim, record: Record) -> None:
        await self.run(self.ledger.remember, claim, record)

    async def finish(self, claim: Claim, outcome: Outcome, **kwargs: Any) -> None:
        await self.run(self.ledger.finish, claim, outcome, **kwargs)

    async def release(self, claim: Claim) -> None:
        await self.run(self.ledger.release, claim)

    # Key-value entries, the cache, the phone index, tokens.
    async def kv_get(self, tenant: str, app: str, key: str) -> str | None:
        return await self.run(self.ledger.kv_get, tenant, app, key)

    async def kv_set(self, tenant: str, app: str, key: str, value: str) -> None:
        await self.run(self.ledger.kv_set, tenant, app, key, value)

    async def kv_delete(self, tenant: str, app: str, key: str) -> None:
        await self.run(self.ledger.kv_delete, tenant, app, key)

    async def cache_get(self, tenant: str, app: str, key: str) -> tuple[str, datetime] | None:
        return await self.run(self.ledger.cache_get, tenant, app, key)

    async def cache_put(self, tenant: str, app: str, key: str, json_text: str,
                        ttl_seconds: float) -> datetime:
        return await self.run(self.ledger.cache_put, tenant, app, key, json_text, ttl_seconds)

    async def cache_delete(self, tenant: str, app: str, key: str) -> None:
        await self.run(self.ledger.cache_delete, tenant, app, key)

    async def index_lookup(self, tenant: str, app: str, e164: str) -> list[IndexEntry]:
        return await self.run(self.ledger.index_lookup, tenant, app, e164)

    async def token_get(self, tenant: str, app: str) -> dict[str, Any] | None:
        return await self.run(self.ledger.token_get, tenant, app)

    async def token_set(self, tenant: str, app: str, token: Mapping[str, Any]) -> None:
        await self.run(self.ledger.token_set, tenant, app, token)

    # Locks.
    async def try_lock(self, name: str, *, ttl: float) -> LockHandle | None:
        return await self.run(self.ledger.try_lock, name, ttl=ttl)

    async def renew_lock(self, handle: LockHandle, ttl: float) -> None:
        await self.run(self.ledger.renew_lock, handle, ttl)

    async def release_lock(self, handle: LockHandle) -> None:
        await self.run(self.ledger.release_lock, handle)

    async def check_fence(self, handle: LockHandle) -> None:
        await self.run(self.ledger.check_fence, handle)

    async def acquire_lock(self, name: str, *, ttl: float = 30.0,
                           wait: float = 30.0) -> LockHandle:
        """Take a ledger lock, waiting on the clock (not on a thread) while it is held."""
        give_up = self.clock.monotonic() + wait
        while (handle := await self.try_lock(name, ttl=ttl)) is None:
            if self.clock.monotonic() >= give_up:
                raise TimeoutError(f"a ledger lock is held by another process (waited {wait:g} s)")
            await self.clock.sleep(_POLL)
        return handle


def gateway_of(ledger: Ledger | LedgerGateway) -> LedgerGateway:
    """The gateway itself, or the ledger's own one."""
    return ledger if isinstance(ledger, LedgerGateway) else ledger.gateway


class HeldLock:
    """A ledger lock held by ``async with``: renewed every third of its lifetime
    while held (also while its holder waits for other things), released on exit.
    ``fence`` is the lock's fencing token; :meth:`check` raises :class:`LockLost`
    if the lock has passed to another process."""

    def __init__(self, gw: LedgerGateway, name: str, *, ttl: float, wait: float) -> None:
        self._gw, self._name, self._ttl, self._wait = gw, name, ttl, wait
        self._handle: LockHandle | None = None
        self._renewer: asyncio.Task[None] | None = None
        self.lost = False
        #: Set after each renewal (for monitoring, and for tests that move a fake clock).
        self.renewed = asyncio.Event()

    @property
    def handle(self) -> LockHandle:
        if self._handle is None:
            raise RuntimeError("the lock is not held")
        return self._handle

    @property
    def fence(self) -> int:
        return self.handle.fence

    async def check(self) -> None:
        """:class:`LockLost` unless the lock is still ours."""
        if self.lost:
            raise LockLost("a ledger lock was lost: it expired and another process took it")
        await self._gw.check_fence(self.handle)

    async def __aenter__(self) -> HeldLock:
        self._handle = await self._gw.acquire_lock(self._name, ttl=self._ttl, wait=self._wait)
        self._renewer = asyncio.create_task(self._renew())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        if self._handle is not None:
            await self._gw.release_lock(self._handle)

    async def _renew(self) -> None:
        while True:
            await self._gw.clock.sleep(self._ttl / 3)
            try:
                await self._gw.renew_lock(self.handle, self._ttl)
            except LockLost:
                self.lost = True
                return
            self.renewed.set()


class LedgerStore:
    """``ctx.store``: the ledger's key-value rows for one (tenant, app)."""

    def __init__(self, ledger: Ledger | LedgerGateway, tenant: str, app: str) -> None:
        self._gw, self._tenant, self._app = gateway_of(ledger), tenant, app

    async def get(self, key: str) -> str | None:
        """The value for ``key``, or None."""
        return await self._gw.kv_get(self._tenant, self._app, key)

    async def set(self, key: str, value: str) -> None:
        """Set ``key`` to ``value``."""
        await self._gw.kv_set(self._tenant, self._app, key, value)

    async def delete(self, key: str) -> None:
        """Remove ``key``, if present."""
        await self._gw.kv_delete(self._tenant, self._app, key)


class LedgerTokenStore:
    """OAuth tokens in the ledger, encrypted; the refresh lock holds across processes."""

    def __init__(self, ledger: Ledger | LedgerGateway) -> None:
        self._gw = gateway_of(ledger)
        self._local: dict[tuple[str, str], asyncio.Lock] = {}

    async def load(self, tenant: str, app: str) -> dict[str, Any] | None:
        """The stored token for (tenant, app), or None."""
        return await self._gw.token_get(tenant, app)

    async def save(self, tenant: str, app: str, token: Mapping[str, Any]) -> None:
        """Store a refreshed or new token."""
        await self._gw.token_set(tenant, app, token)

    @asynccontextmanager
    async def refresh_lock(self, tenant: str, app: str) -> AsyncIterator[None]:
        """Held around a token refresh: one at a time per (tenant, app), across processes."""
        local = self._local.setdefault((tenant, app), asyncio.Lock())
        # Waits past the lock's lifetime, so a crashed holder's lock is taken over.
        async with local, HeldLock(self._gw, f"oauth\x1f{tenant}\x1f{app}", ttl=30, wait=40):
            yield
