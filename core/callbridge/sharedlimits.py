"""Rate-limit windows shared by every worker process on one PostgreSQL ledger.

Each bucket instance (plugin, bucket name, scope key) has a row in
``rate_limit_keys`` and a sliding-window log in ``rate_limit_log``: one entry
per request, counted from its start until its answer (then at the answer's
time), as the in-process window counts a :class:`~callbridge.buckets.Ticket`.

Counting a request is one short transaction: lock the key's row (an upsert,
which takes the row lock), delete the entries that left the window, read the
rest, and insert the request if its units fit; else nothing is written and the
caller learns how long until enough units leave the window. The answer's time
is written when it arrives, off the event loop.

Times are Unix times from the registry's clock: the workers' clocks must agree
(NTP) to within the registry's slack. What stays in each process: the order of
waiters (priority, fair share), ``max_wait``, daily budgets, and what the app's
headers and 429 answers say (see docs/rate-limits.md, "Shared by many workers").
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection, Engine

from callbridge.buckets import (
    STALE_AFTER,
    BucketKey,
    BucketState,
    InProcessBucketStore,
    RateBucket,
    Window,
)
from callbridge.clock import SYSTEM, Clock
from callbridge.errors import DailyLimitReached, RateLimited
from callbridge.ledger import tables as t

__all__ = ["SharedBucketStore", "bucket_key_text", "shared_store_for"]

log = logging.getLogger("callbridge.sharedlimits")

#: How long a request waits (as ``RateLimited``) when the database cannot count it.
UNREACHABLE_RETRY = 5.0
#: Every this many seconds a process sweeps what buckets no longer used left behind:
#: entries that count no more (older than SWEEP_HORIZON) and keys with nothing left.
SWEEP_EVERY = 600.0
SWEEP_HORIZON = 2 * 86400.0


def bucket_key_text(key: BucketKey) -> str:
    """The row key of a bucket instance: ``plugin/bucket/scope key``."""
    return "/".join(key)


class SharedBucketStore(InProcessBucketStore):
    """Bucket states in this process, and each bucket's window in the database.

    Pass it as ``LimiterRegistry(store=...)``: the registry then counts every
    request here (:meth:`take`) besides its own window, so every process on
    the database together stays within each bucket.
    """

    shared = True

    def __init__(self, engine: Engine, *, clock: Clock = SYSTEM) -> None:
        super().__init__()
        self.engine = engine
        self.clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._pending: set[asyncio.Future[None]] = set()
        self._write_lock = threading.Lock() if not self._postgres else None
        self._swept_at: float | None = None

    # --- the transaction -------------------------------------------------------------

    def take_now(self, key: BucketKey, bucket: RateBucket, units: int, now: float,
                 slack: float) -> tuple[int | None, float]:
        """Count ``units`` at ``now`` if they fit in every window of ``bucket``
        and in its daily budget.

        Returns (the entry's id, 0.0) when counted (id 0: a daily-only bucket,
        no answer time to write), else (None, seconds until they fit); a spent
        daily budget raises :class:`DailyLimitReached`. Runs in a worker thread.
        """
        name = bucket_key_text(key)
        windows = BucketState.new(bucket).windows()
        log = t.rate_limit_log
        with self._locked() as conn:
            used, resets_at = self._lock_key(conn, name)
            if bucket.daily is not None:
                if resets_at is None or now >= resets_at:
                    used = 0
                    resets_at = bucket.next_daily_reset(
                        datetime.fromtimestamp(now, UTC)).timestamp()
                if (used or 0) + units > bucket.daily:
                    when = datetime.fromtimestamp(resets_at, UTC)
                    raise DailyLimitReached(
                        f"the daily budget of rate-limit bucket '{bucket.name}' is spent until "
                        f"{when.isoformat(timespec='minutes')}", retry_after=resets_at - now,
                        resets_at=when)
            entry = 0
            if windows:
                # Entries that count before the horizon: answered, or lost (in flight too long).
                cut = now - max(w.seconds for w in windows) - slack
                conn.execute(log.delete().where(log.c.bucket_key == name, sa.or_(
                    log.c.done_at < cut,
                    sa.and_(log.c.done_at.is_(None), log.c.started + STALE_AFTER < cut))))
                at = max(self._free_at(conn, name, window, now, slack, units)
                         for window in windows)
                if at > now:
                    return None, at - now
                entry = int(conn.execute(log.insert().values(
                    bucket_key=name, started=now, done_at=None, units=units).returning(
                    log.c.id)).scalar_one())
            if bucket.daily is not None:
                keys = t.rate_limit_keys
                conn.execute(keys.update().where(keys.c.bucket_key == name).values(
                    daily_used=(used or 0) + units, daily_resets_at=resets_at))
        if self._swept_at is None or now - self._swept_at >= SWEEP_EVERY:
            self._swept_at = now
            self.sweep(now)
        return entry, 0.0

    def sweep(self, now: float) -> None:
        """Delete what buckets no longer used left: entries older than
        :data:`SWEEP_HORIZON` (windows are shorter), and keys with no entry left
        and no daily budget running. A bucket in use deletes its own as it goes."""
        log, keys = t.rate_limit_log, t.rate_limit_keys
        cut = now - SWEEP_HORIZON
        with self._locked() as conn:
            conn.execute(log.delete().where(
                sa.func.coalesce(log.c.done_at, log.c.started + STALE_AFTER) < cut))
            conn.execute(keys.delete().where(
                sa.or_(keys.c.daily_resets_at.is_(None), keys.c.daily_resets_at < now),
                ~sa.exists().where(log.c.bucket_key == keys.c.bucket_key)))

    @staticmethod
    def _free_at(conn: Connection, name: str, window: Window, now: float, slack: float,
                 need: int) -> float:
        """When ``need`` more units fit in ``window`` (``now`` if at once), counted in
        the database (as :meth:`Window.free_at` counts in a process): the units in the
        window, then, only when they do not fit, the few oldest entries that must leave."""
        log = t.rate_limit_log
        # When an entry counts: its answer's time; in flight, now (a lost one: five minutes).
        at_now = sa.literal(now, sa.Float)
        counts_at = sa.case((log.c.done_at.is_not(None), log.c.done_at),
                            (log.c.started + STALE_AFTER < at_now, log.c.started + STALE_AFTER),
                            else_=at_now)
        inside = (log.c.bucket_key == name, counts_at >= now - window.seconds - slack)
        extra_windows, need = (divmod(need - 1, window.limit) if need > window.limit
                               else (0, need))
        used = int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(log.c.units), 0)).where(
            *inside)).scalar_one())
        excess = used + need - window.limit
        at = now
        if excess > 0:
            for row in conn.execute(sa.select(counts_at.label("at"), log.c.units).where(
                    *inside).order_by(counts_at).limit(excess)):
                excess -= int(row.units)
                if excess <= 0:
                    at = max(now, float(row.at) + window.seconds + slack)
                    break
        return at + extra_windows * window.seconds

    def _lock_key(self, conn: Connection, name: str) -> tuple[int | None, float | None]:
        """Lock the key's row (made if missing); its (daily_used, daily_resets_at)."""
        keys = t.rate_limit_keys
        if self._postgres:
            # An upsert that always updates: it takes the row's lock, made or not.
            made = conn.execute(postgresql_insert(keys).values(bucket_key=name).on_conflict_do_update(
                index_elements=["bucket_key"], set_={"bucket_key": name}).returning(
                keys.c.daily_used, keys.c.daily_resets_at)).one()
            return made.daily_used, made.daily_resets_at
        row = conn.execute(sa.select(keys.c.daily_used, keys.c.daily_resets_at).where(
            keys.c.bucket_key == name)).first()
        if row is None:
            conn.execute(keys.insert().values(bucket_key=name))
            return None, None
        return row.daily_used, row.daily_resets_at

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        with self._write_lock or nullcontext(), self.engine.begin() as conn:
            if self._postgres:
                # A window's entries need not outlive a crash of the database: no
                # waiting for the disk at each commit (the row lock is held less).
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn

    def done_now(self, entry: int, at: float) -> None:
        """The request's answer arrived at ``at``: it counts then."""
        if not entry:
            return
        log = t.rate_limit_log
        with self._locked() as conn:
            conn.execute(log.update().where(log.c.id == entry).values(
                done_at=sa.func.greatest(log.c.started, at) if self._postgres else at))

    # --- what the registry calls -----------------------------------------------------

    async def take(self, key: BucketKey, bucket: RateBucket, units: int, now: float,
                   slack: float) -> tuple[int | None, float]:
        """:meth:`take_now` off the event loop.

        A database that cannot be reached counts nothing and raises
        :class:`RateLimited` (the delivery waits and is tried again): never a
        request the other workers do not know about.
        """
        with _busy(self.clock):
            try:
                return await asyncio.to_thread(self.take_now, key, bucket, units, now, slack)
            except sa.exc.DBAPIError as exc:
                log.warning("the shared rate-limit window of bucket %r could not be read (%s)",
                            bucket.name, type(exc.orig).__name__ if exc.orig else type(exc).__name__)
                raise RateLimited("the shared rate-limit store could not be reached",
                                  retry_after=UNREACHABLE_RETRY) from None

    def done(self, entry: int, at: float) -> None:
        """Write the answer's time off the event loop (at once outside one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.done_now(entry, at)
            return
        hold = getattr(self.clock, "busy", None)
        busy = hold() if hold is not None else nullcontext()
        busy.__enter__()  # a test clock must not jump before the time is written
        future = loop.run_in_executor(None, self.done_now, entry, at)
        self._pending.add(future)

        def finished(done: asyncio.Future[None]) -> None:
            self._pending.discard(done)
            busy.__exit__(None, None, None)
            failed = None if done.cancelled() else done.exception()
            if failed is not None:  # the entry counts as in flight, for five minutes at most
                log.warning("the answer time of a shared rate-limit entry was not written (%s)",
                            type(failed).__name__)
        future.add_done_callback(finished)

    async def drain(self) -> None:
        """Wait for the answers' times still being written (tests, shutdown)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def entries(self, key: BucketKey) -> list[tuple[float, float | None, int]]:
        """The log of one bucket instance: (started, done_at, units), oldest first."""
        log = t.rate_limit_log
        with self.engine.connect() as conn:
            return [(float(r.started), None if r.done_at is None else float(r.done_at),
                     int(r.units)) for r in conn.execute(
                sa.select(log.c.started, log.c.done_at, log.c.units).where(
                    log.c.bucket_key == bucket_key_text(key)).order_by(log.c.started, log.c.id))]


@contextmanager
def _busy(clock: Clock) -> Iterator[None]:
    """Tell a test clock that real work is under way (it must not jump meanwhile)."""
    hold = getattr(clock, "busy", None)
    with hold() if hold is not None else nullcontext():
        yield


def shared_store_for(ledger: Any, clock: Clock = SYSTEM) -> SharedBucketStore | None:
    """The shared store when ``ledger`` is on PostgreSQL, else None (in-process buckets)."""
    if getattr(ledger, "_postgres", False):
        return SharedBucketStore(ledger.engine, clock=clock)
    return None
