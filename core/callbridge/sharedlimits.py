"""Rate-limit windows shared by every worker process on one PostgreSQL ledger.

Each bucket instance (plugin, bucket name, scope key) has a row in
``rate_limit_keys`` and a sliding-window log in ``rate_limit_log``: one entry
per request, counted from its start until its answer (then at the answer's
time), as the in-process window counts a :class:`~callbridge.buckets.Ticket`.

Counting requests is one short transaction for all the requests of one bucket
instance that wait in a process (callbridge.ratelimit_shared): lock the key's
row (an upsert, which takes the row lock), read the time, delete the entries
that left the window, sum the rest, and insert as many of the requests as fit,
in their order; for the first that does not fit the caller learns how long until
enough units leave the window. The answers' times are written when they arrive,
several in one transaction, off the event loop. The store has threads and
database connections of its own: a count never waits behind other work.

Times are Unix times from the store's clock, read while the key is locked: the
workers' clocks must agree (NTP) to within the registry's slack. What stays in each process: the order of
waiters (priority, fair share), ``max_wait``, daily budgets, and what the app's
headers and 429 answers say (see docs/rate-limits.md, "Shared by many workers").
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    Taken,
    Window,
)
from callbridge.clock import SYSTEM, Clock
from callbridge.errors import DailyLimitReached, RateLimited
from callbridge.ledger import tables as t

__all__ = ["SharedBucketStore", "bucket_key_text", "shared_store_for"]

log_ = logging.getLogger("callbridge.sharedlimits")

#: How long a request waits (as ``RateLimited``) when the database cannot count it.
UNREACHABLE_RETRY = 5.0
#: The store's threads, and its connections on PostgreSQL: counts of this many
#: bucket instances can be under way at once (each counts many requests).
THREADS = 8
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

    On PostgreSQL the store has connections of its own (``threads`` of them, one
    per thread of its own executor), so a count never queues behind the ledger's
    work or anything else run in a thread; :meth:`close` releases them.
    """

    shared = True

    def __init__(self, engine: Engine, *, clock: Clock = SYSTEM, threads: int = THREADS) -> None:
        super().__init__()
        self.clock = clock
        self._postgres = engine.dialect.name == "postgresql"
        self._own: Engine | None = None
        if self._postgres:
            # A window's entries need not outlive a crash of the database: no waiting
            # for the disk at each commit (the key's row lock is held less).
            url = engine.url
            options = url.query.get("options", "")
            options = " ".join(options) if isinstance(options, tuple) else options
            engine = self._own = sa.create_engine(
                url.update_query_dict({"options": f"{options} -c synchronous_commit=off".strip()}),
                pool_size=threads, max_overflow=threads, pool_timeout=5)
        self.engine = engine
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._write_lock = threading.Lock() if not self._postgres else None
        self._swept_at: float | None = None
        self._answers: list[tuple[int, float]] = []
        self._writing: asyncio.Future[None] | None = None

    def close(self) -> None:
        """Stop the store's threads and close its connections (both come back if it
        is used again)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._own is not None:
            self._own.dispose()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self._threads,
                                                thread_name_prefix="callbridge-limits")
        return self._executor

    # --- the transaction -------------------------------------------------------------

    def take_now(self, key: BucketKey, bucket: RateBucket, units: Sequence[int],
                 slack: float) -> Taken:
        """Count the requests of ``units`` (each its units, in order), as many as fit
        in every window of ``bucket`` and in its daily budget, in one transaction.

        The time is read once the key's row is locked, so the counts of every
        process on the key follow their times. Runs in one of the store's threads.
        """
        name = bucket_key_text(key)
        windows = BucketState.new(bucket).windows()
        log = t.rate_limit_log
        with self._locked() as conn:
            used, resets_at = self._lock_key(conn, name)
            now = self.clock.now().timestamp()
            fits, refusal = len(units), None
            if bucket.daily is not None:
                if resets_at is None or now >= resets_at:
                    used = 0
                    resets_at = bucket.next_daily_reset(
                        datetime.fromtimestamp(now, UTC)).timestamp()
                spent = used or 0
                for n, need in enumerate(units):
                    if spent + need > bucket.daily:
                        fits, refusal = n, _daily_spent(bucket, resets_at, now)
                        break
                    spent += need
            entries, wait = [0] * fits, 0.0
            if windows:
                # Entries that count before the horizon: answered, or lost (in flight too long).
                cut = now - max(w.seconds for w in windows) - slack
                conn.execute(log.delete().where(log.c.bucket_key == name, sa.or_(
                    log.c.done_at < cut,
                    sa.and_(log.c.done_at.is_(None), log.c.started + STALE_AFTER < cut))))
                counted = [self._used(conn, name, window, now, slack) for window in windows]
                taken, fits_windows = 0, 0
                for need in units[:fits]:
                    if any(c + taken + need > w.limit for c, w in zip(counted, windows,
                                                                        strict=True)):
                        break
                    taken += need
                    fits_windows += 1
                if fits_windows < fits:
                    fits, refusal = fits_windows, None
                entries = [int(i) for i in conn.execute(
                    log.insert().returning(log.c.id, sort_by_parameter_order=True),
                    [{"bucket_key": name, "started": now, "done_at": None, "units": need}
                     for need in units[:fits]]).scalars()] if fits else []
                if fits < len(units) and refusal is None:
                    wait = max(self._free_at(conn, name, window, now, slack, units[fits])
                               for window in windows) - now
            if bucket.daily is not None:
                keys = t.rate_limit_keys
                conn.execute(keys.update().where(keys.c.bucket_key == name).values(
                    daily_used=(used or 0) + sum(units[:fits]), daily_resets_at=resets_at))
        if self._swept_at is None or now - self._swept_at >= SWEEP_EVERY:
            self._swept_at = now
            try:
                self.sweep(now)
            except sa.exc.SQLAlchemyError as exc:  # the next sweep will do
                log_.warning("the sweep of unused rate-limit windows failed (%s)",
                             type(exc).__name__)
        return Taken(entries, wait, refusal)

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
    def _counts_at(now: float) -> Any:
        """When an entry counts: its answer's time; in flight, now (a lost one: five minutes)."""
        log = t.rate_limit_log
        at_now = sa.literal(now, sa.Float)
        return sa.case((log.c.done_at.is_not(None), log.c.done_at),
                       (log.c.started + STALE_AFTER < at_now, log.c.started + STALE_AFTER),
                       else_=at_now)

    def _used(self, conn: Connection, name: str, window: Window, now: float,
              slack: float) -> int:
        """The units in ``window`` now (an entry leaves it ``seconds + slack`` after
        it counts: at that very time there is room, as :meth:`Window.free_at` says)."""
        log = t.rate_limit_log
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(log.c.units), 0)).where(
            log.c.bucket_key == name,
            self._counts_at(now) > now - window.seconds - slack)).scalar_one())

    def _free_at(self, conn: Connection, name: str, window: Window, now: float, slack: float,
                 need: int) -> float:
        """When ``need`` more units fit in ``window`` (``now`` if at once), counted in
        the database (as :meth:`Window.free_at` counts in a process): the units in the
        window, then, only when they do not fit, the few oldest entries that must leave."""
        log = t.rate_limit_log
        counts_at = self._counts_at(now)
        extra_windows, need = (divmod(need - 1, window.limit) if need > window.limit
                               else (0, need))
        excess = self._used(conn, name, window, now, slack) + need - window.limit
        at = now
        if excess > 0:
            for row in conn.execute(sa.select(counts_at.label("at"), log.c.units).where(
                    log.c.bucket_key == name, counts_at > now - window.seconds - slack,
            ).order_by(counts_at).limit(excess)):
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
            yield conn

    def done_now(self, answers: Sequence[tuple[int, float]]) -> None:
        """The answers of these entries arrived at these (Unix) times: they count then."""
        log = t.rate_limit_log
        answered = sa.bindparam("answered", type_=sa.Float)
        with self._locked() as conn:
            conn.execute(log.update().where(log.c.id == sa.bindparam("entry")).values(
                done_at=sa.func.greatest(log.c.started, answered) if self._postgres
                else answered), [{"entry": e, "answered": at} for e, at in answers if e])

    # --- what the registry calls -----------------------------------------------------

    async def take(self, key: BucketKey, bucket: RateBucket, units: Sequence[int],
                   slack: float) -> Taken:
        """:meth:`take_now` on the store's own threads, tried twice.

        A database that cannot count them counts nothing and raises
        :class:`RateLimited` (the delivery waits and is tried again): never a
        request the other workers do not know about.
        """
        loop = asyncio.get_running_loop()
        with _busy(self.clock):
            for attempt in (1, 2):
                try:
                    return await loop.run_in_executor(
                        self._pool(), self.take_now, key, bucket, list(units), slack)
                except (sa.exc.DBAPIError, sa.exc.TimeoutError) as exc:
                    what = type(getattr(exc, "orig", None) or exc).__name__
                    if attempt == 1:  # a lost connection, a deadlock: once more at once
                        log_.info("counting in the shared rate-limit window of bucket %r "
                                  "failed (%s); trying again", bucket.name, what)
                        continue
                    log_.warning("the shared rate-limit window of bucket %r could not be "
                                 "read (%s)", bucket.name, what)
            raise RateLimited("the shared rate-limit store could not be reached",
                              retry_after=UNREACHABLE_RETRY)

    def done(self, entry: int, at: float) -> None:
        """Write the answer's time off the event loop (at once outside one); the
        answers that arrive meanwhile are written together."""
        if not entry:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.done_now([(entry, at)])
            return
        self._answers.append((entry, at))
        if self._writing is None or self._writing.get_loop() is not loop:
            hold = getattr(self.clock, "busy", None)
            busy = hold() if hold is not None else nullcontext()
            busy.__enter__()  # a test clock must not jump before the times are written
            self._writing = loop.create_task(self._write_answers(busy))

    async def _write_answers(self, busy: Any) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._answers:
                answers, self._answers = self._answers, []
                try:
                    await loop.run_in_executor(self._pool(), self.done_now, answers)
                except sa.exc.SQLAlchemyError as exc:  # they count as in flight (5 min at most)
                    log_.warning("the answer times of %d shared rate-limit entries were not "
                                 "written (%s)", len(answers), type(exc).__name__)
        finally:
            if self._writing is asyncio.current_task():
                self._writing = None
            busy.__exit__(None, None, None)

    async def drain(self) -> None:
        """Wait for the answers' times still being written (tests, shutdown)."""
        loop = asyncio.get_running_loop()
        while self._writing is not None and self._writing.get_loop() is loop:
            await asyncio.shield(self._writing)

    def entries(self, key: BucketKey) -> list[tuple[float, float | None, int]]:
        """The log of one bucket instance: (started, done_at, units), oldest first."""
        log = t.rate_limit_log
        with self.engine.connect() as conn:
            return [(float(r.started), None if r.done_at is None else float(r.done_at),
                     int(r.units)) for r in conn.execute(
                sa.select(log.c.started, log.c.done_at, log.c.units).where(
                    log.c.bucket_key == bucket_key_text(key)).order_by(log.c.started, log.c.id))]


def _daily_spent(bucket: RateBucket, resets_at: float, now: float) -> DailyLimitReached:
    when = datetime.fromtimestamp(resets_at, UTC)
    return DailyLimitReached(
        f"the daily budget of rate-limit bucket '{bucket.name}' is spent until "
        f"{when.isoformat(timespec='minutes')}", retry_after=resets_at - now, resets_at=when)


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
