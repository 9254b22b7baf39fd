"""The ledger's hot path on a SQLite file: group commit on the driver itself.

The writes every delivery makes (an event stored, a step begun, a record
remembered, an outcome finished) go to one writer thread with its own
``sqlite3`` connection. The thread takes every write waiting when it wakes and
runs them in ONE transaction, each in a savepoint of its own (a write that fails,
e.g. on a lost lease, is rolled back alone and its caller gets the error), then
commits once; only then is each caller told its write is done. So what finishes
together costs one commit, and each caller still waits for its own commit: an
acknowledged write survives the process being killed.

Statements are plain SQL through the driver: SQLAlchemy's cost per statement
(about ten times the statement's own on SQLite) is paid by the other, colder
paths only. Values are written as SQLAlchemy writes them on SQLite (times as
``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, booleans as 0/1), so both paths read each
other's rows. Async code reaches it without a thread hop of its own: the
gateway hands the write to the writer and awaits the commit
(:meth:`GroupWriter.submit`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("callbridge.ledger")

#: The most writes one transaction takes (a bound on what one commit holds).
GROUP_MAX = 512
PRAGMAS = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "secure_delete=ON",
           "busy_timeout=30000")

Job = Callable[[sqlite3.Cursor], Any]

#: The event loop's connection never checkpoints (a commit there must not copy the WAL
#: back). Every this many groups the writer looks at the WAL's size and, past
#: CHECKPOINT_BYTES (SQLite's own default of 1,000 pages), its thread copies it back
#: (PASSIVE: it waits for no reader and no other process's writer). The next write then starts the WAL
#: again from its beginning, cut back to WAL_LIMIT_BYTES if it grew past that.
CHECKPOINT_CHECK_GROUPS = 32
CHECKPOINT_BYTES = 4 * 1024 * 1024
WAL_LIMIT_BYTES = 16 * 1024 * 1024


def sql_value(value: Any) -> Any:
    """A value as SQLAlchemy stores it in SQLite (UTCDateTime, Boolean)."""
    kind = type(value)
    if kind is datetime:
        if value.tzinfo is not UTC:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the ledger")
            value = value.astimezone(UTC)
        # "YYYY-MM-DD HH:MM:SS.ffffff", SQLAlchemy's storage format for SQLite (in UTC,
        # without the "+00:00" the aware time's text ends with).
        return value.isoformat(" ", "microseconds")[:-6]
    if kind is bool:
        return int(value)
    if isinstance(value, datetime):  # a subclass
        return sql_value(datetime.fromtimestamp(value.timestamp(), UTC))
    return value


_PLAIN = frozenset({str, int, float, bytes, type(None)})


def sql_values(values: Sequence[Any]) -> tuple[Any, ...]:
    plain = _PLAIN
    return tuple([v if type(v) in plain else sql_value(v) for v in values])


def read_time(text: str | None) -> datetime | None:
    """A time column read through the driver, as UTCDateTime gives it."""
    if text is None:
        return None
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _commit(cur: sqlite3.Cursor) -> None:
    """A group's COMMIT (its own function: the benchmarks' profile meters it apart)."""
    cur.execute("COMMIT")


class _Checkpoint:
    """Queued for the writer thread: copy the WAL back into the database."""


class _Stop:
    pass


def _pass_on(to: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    if to.done():
        return
    exc = done.exception()
    if exc is not None:
        to.set_exception(exc)
    else:
        to.set_result(done.result())


class GroupWriter:
    """One writer thread, one ``sqlite3`` connection, one commit per group of writes.

    ``write_lock`` is the ledger's in-process writer lock: held for each group's
    transaction, so the ledger's other writes in this process queue behind it
    instead of meeting SQLite's busy handler.
    """

    def __init__(self, path: str, write_lock: Any) -> None:
        self._path = path
        self._lock = write_lock
        self._queue: queue.SimpleQueue[tuple[Job, Future[Any]] | _Stop | _Checkpoint] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._run, name="callbridge-ledger-writer",
                                        daemon=True)
        self._closed = False
        self._conn = sqlite3.connect(path, timeout=30, isolation_level=None,
                                     check_same_thread=False)
        for pragma in PRAGMAS:
            self._conn.execute(f"PRAGMA {pragma}")
        # The event loop's own connection: it never waits for a lock (busy_timeout 0);
        # a group that finds the database busy is handed to the thread instead.
        self._loop_conn = sqlite3.connect(path, timeout=0, isolation_level=None,
                                          check_same_thread=False)
        for pragma in PRAGMAS:
            self._loop_conn.execute(f"PRAGMA {pragma}")
        self._loop_conn.execute("PRAGMA busy_timeout=0")
        # Checkpoints (copying the WAL back into the database) are left to the other
        # connections, so a commit on the event loop never runs one.
        self._loop_conn.execute("PRAGMA wal_autocheckpoint=0")
        for conn in (self._conn, self._loop_conn):
            conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
        self._wal_path = path + "-wal"
        self._checkpoint_queued = False
        #: Checkpoints the writer thread ran (tests and the benchmarks' profile).
        self.checkpoints = 0
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Job, asyncio.Future[Any]]]] = {}
        #: Transactions committed, writes they held, and groups handed to the thread
        #: because the database was busy (for the benchmarks' profile).
        self.groups = 0
        self.writes = 0
        self.handed_over = 0
        self._thread.start()

    async def write(self, job: Job) -> Any:
        """Run ``job`` in a group committed on the event loop (every write queued during
        this turn of the loop is in it); the result once the group has committed.

        No lock is waited for on the loop: if this process's other writer or another
        process holds SQLite's write lock, the group goes to the writer thread, which
        waits for it. What runs on the loop is a group's statements and its commit
        (under synchronous=NORMAL a commit appends to the WAL, without fsync).
        """
        return await self._enqueue(job)

    async def write_many(self, jobs: Sequence[Job]) -> list[Any]:
        """:meth:`write` for several jobs at once (in the same group, no task each); their
        results in order once committed, or the first job's exception."""
        futures = [self._enqueue(job) for job in jobs]
        results: list[Any] = []
        first: BaseException | None = None
        for future in futures:
            try:
                results.append(await future)
            except Exception as exc:  # every outcome retrieved; the first raised
                first = first or exc
        if first is not None:
            raise first
        return results

    def _enqueue(self, job: Job) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append((job, future))
        return future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        group = self._pending.pop(loop, [])
        while group:
            part, group = group[:GROUP_MAX], group[GROUP_MAX:]
            self._flush_part(loop, part)

    def _flush_part(self, loop: asyncio.AbstractEventLoop,
                    group: list[tuple[Job, asyncio.Future[Any]]]) -> None:
        outcomes: list[tuple[bool, Any]] | None = None
        if not self._closed and self._lock.acquire(blocking=False):
            try:
                outcomes = self._transaction(self._loop_conn, [job for job, _ in group],
                                             busy_ok=True)
            finally:
                self._lock.release()
        if outcomes is None:  # busy: the thread waits for the lock instead
            self.handed_over += 1
            for job, future in group:
                done = asyncio.wrap_future(self.submit(job), loop=loop)
                done.add_done_callback(functools.partial(_pass_on, future))
            return
        self.groups += 1
        self.writes += len(group)
        self._maybe_checkpoint()
        for (_, future), (ok, value) in zip(group, outcomes, strict=True):
            if future.done():  # its caller was cancelled; the write stands
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    @staticmethod
    def _transaction(conn: sqlite3.Connection, jobs: list[Job],
                     busy_ok: bool = False) -> list[tuple[bool, Any]] | None:
        """Run ``jobs`` in one transaction; their (ok, result or exception). A job that
        fails is rolled back alone: the group runs again with each job in a savepoint
        (jobs are pure functions of the database, so running one again is safe). With
        ``busy_ok``, None when the database is locked (nothing done)."""
        cur = conn.cursor()
        try:
            try:
                cur.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                if busy_ok:
                    return None
                raise
            try:
                outcomes: list[tuple[bool, Any]] = []
                try:  # the usual case, every job succeeds: no savepoints
                    for job in jobs:
                        outcomes.append((True, job(cur)))
                except Exception:
                    cur.execute("ROLLBACK")
                    try:
                        cur.execute("BEGIN IMMEDIATE")
                    except sqlite3.OperationalError:  # another writer came in between
                        if busy_ok:
                            return None
                        raise
                    outcomes = []
                    for job in jobs:
                        cur.execute("SAVEPOINT w")
                        try:
                            outcomes.append((True, job(cur)))
                        except Exception as exc:  # handed to its caller
                            cur.execute("ROLLBACK TO w")
                            outcomes.append((False, exc))
                        cur.execute("RELEASE w")
                _commit(cur)
            except BaseException:
                if conn.in_transaction:
                    cur.execute("ROLLBACK")
                raise
            return outcomes
        finally:
            cur.close()

    def submit(self, job: Job) -> Future[Any]:
        """Queue ``job`` (run as ``job(cursor)`` inside a group's transaction); the future
        is done once the group has committed (or with the job's exception)."""
        future: Future[Any] = Future()
        if self._closed:
            future.set_exception(RuntimeError("the ledger is closed"))
            return future
        self._queue.put((job, future))
        return future

    def run(self, job: Callable[[sqlite3.Cursor], T]) -> T:
        """:meth:`submit` and wait for the commit (for synchronous callers)."""
        result: T = self.submit(job).result()
        return result

    def close(self) -> None:
        """Finish what is queued, then stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_Stop())
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=60)
        self._conn.close()
        self._loop_conn.close()

    def _maybe_checkpoint(self) -> None:
        """Every few groups: a checkpoint for the thread if the WAL has grown past its size."""
        if self.groups % CHECKPOINT_CHECK_GROUPS or self._checkpoint_queued or self._closed:
            return
        try:
            size = os.stat(self._wal_path).st_size
        except OSError:
            return
        if size > CHECKPOINT_BYTES:
            self._checkpoint_queued = True
            self._queue.put(_Checkpoint())

    def _checkpoint(self) -> None:
        try:
            # The bulk first, beside this process's writes; then the rest under the
            # in-process write lock (short), so those writes (handed to this thread
            # meanwhile, the loop never waits) cannot keep it from copying the whole
            # WAL; the next write then starts it again from its beginning.
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with self._lock:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:  # tried again once the WAL has grown further
            log.warning("copying the ledger's write-ahead log back failed: %s",
                        type(exc).__name__)
        finally:
            self._checkpoint_queued = False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if isinstance(first, _Stop):
                return
            if isinstance(first, _Checkpoint):
                self._checkpoint()
                continue
            group = [first]
            stop = checkpoint = False
            while len(group) < GROUP_MAX:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Stop):
                    stop = True
                    break
                if isinstance(item, _Checkpoint):
                    checkpoint = True
                    continue
                group.append(item)
            self._commit(group)
            if checkpoint:
                self._checkpoint()
            if stop:
                return

    def _commit(self, group: list[tuple[Job, Future[Any]]]) -> None:
        try:
            with self._lock:
                outcomes = self._transaction(self._conn, [job for job, _ in group])
        except BaseException as exc:  # the commit failed: every caller is told
            log.warning("a group of ledger writes failed to commit: %s", type(exc).__name__)
            for _, future in group:
                future.set_exception(exc)
            return
        assert outcomes is not None
        self.groups += 1
        self.writes += len(group)
        self._maybe_checkpoint()
        for (_, future), (ok, value) in zip(group, outcomes, strict=True):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
