"""The ledger's database: engines, transactions, migrations, and the helpers every
concern shares."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from callbridge.clock import SYSTEM, Clock
from callbridge.events import AnyEvent
from callbridge.ledger import tables as t
from callbridge.ledger.crypto import Cipher
from callbridge.ledger.hot import GroupWriter
from callbridge.ledger.types import Claim, LeaseLost
from callbridge.markers import (
    HashKey,
    event_id_hash,
    hash_event_ids,
    load_hash_key,
    marker_for,
    read_hash_key,
)
from callbridge.models import ParkReason, Record, WaitReason

if TYPE_CHECKING:
    from callbridge.ledger.pgdirect import Direct

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")
_MIGRATE_LOCK = 0x63616C6C  # any fixed number: the advisory lock of migrations
FINAL_OK = ("logged", "accepted")
#: The states a delivery may leave without anyone's help (SPEC §2.6).
NOT_ENDED = ("pending", "waiting", "parked")
#: Sub-states (``reason``) of waiting and parked deliveries.
WAITING_REASONS = tuple(r.value for r in WaitReason)
PARKED_REASONS = tuple(r.value for r in ParkReason)
DEFAULT_DEADLINE_HOURS = 72.0
#: ``0`` turns the hot paths off (every write through SQLAlchemy): the SQLite file's
#: group commit (ledger.hot) and PostgreSQL's single-statement writes (ledger.pgdirect).
HOT_ENV = "CALLBRIDGE_LEDGER_GROUP_COMMIT"


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


# Statements built once: building SQLAlchemy expressions per call costs more than
# running them.
_SELECT_EVENT = sa.select(
    t.events.c.id, t.events.c.revision, t.events.c.content_hash, t.events.c.purged_at,
).where(
    t.events.c.tenant == sa.bindparam("tenant"), t.events.c.source == sa.bindparam("source"),
    t.events.c.kind == sa.bindparam("kind"), t.events.c.source_id == sa.bindparam("source_id"))
_SELECT_RECORD = sa.select(t.records.c.app_id).where(
    t.records.c.delivery_id == sa.bindparam("did"), t.records.c.kind == sa.bindparam("kind"),
    t.records.c.step == sa.bindparam("step"))
_CLAIM = t.deliveries.update().where(t.deliveries.c.id == sa.bindparam("did")).values(
    lease_owner=sa.bindparam("owner"), lease_expires=sa.bindparam("expires"),
    fence=sa.bindparam("fence"), attempt=sa.bindparam("attempt"),
    first_attempt_at=sa.bindparam("first"), updated_at=sa.bindparam("now"))


_SELECT_RECORDS = sa.select(t.records).where(
    t.records.c.delivery_id.in_(sa.bindparam("ids", expanding=True))).order_by(t.records.c.id)
_FENCED = t.deliveries.update().where(
    t.deliveries.c.id == sa.bindparam("_did"), t.deliveries.c.fence == sa.bindparam("_fence"),
    t.deliveries.c.lease_owner == sa.bindparam("_owner"))
# After a log: an update is still needed if a newer revision arrived meanwhile.
_FENCED_LOGGED = _FENCED.values(needs_update=sa.select(t.events.c.revision).where(
    t.events.c.id == t.deliveries.c.event_id).scalar_subquery() != sa.bindparam("_revision"))


class LedgerCore:
    """The database side every concern of :class:`callbridge.ledger.Ledger` shares."""

    def __init__(self, url: str, *, secret_key: str | None = None,
                 deadline_hours: float = DEFAULT_DEADLINE_HOURS, clock: Clock = SYSTEM) -> None:
        self.url = url
        #: Where the ledger reads the time (leases, deadlines, cache and lock expiry).
        self.clock = clock
        if not 0 < deadline_hours <= 24 * 366:
            raise ValueError("deadline_hours: must be more than 0 and at most a year of hours")
        #: How long after its event a delivery is retried after transient failures.
        self.deadline = timedelta(hours=deadline_hours)
        self._cipher = Cipher(secret_key)
        parsed = sa.engine.make_url(url)
        self._sqlite = parsed.get_backend_name() == "sqlite"
        self._postgres = parsed.get_backend_name() == "postgresql"
        kwargs: dict[str, Any] = {}
        memory = False
        if self._sqlite:
            path = parsed.database or ""
            memory = path in ("", ":memory:") or parsed.query.get("mode") == "memory"
            if not memory:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if memory:  # one connection, or each would see a database of its own
                kwargs["poolclass"] = StaticPool
        self.engine: Engine = sa.create_engine(url, **kwargs)
        # Reads need no write lock: on a SQLite file they use their own engine, whose
        # transactions begin deferred (WAL lets them run beside a writer).
        self._reader: Engine = self.engine
        if self._sqlite:
            self._sqlite_setup(self.engine, immediate=True)
            if not memory:
                self._reader = sa.create_engine(url, **kwargs)
                self._sqlite_setup(self._reader, immediate=False)
        # Built once: the dialect's INSERT, where it has ON CONFLICT.
        self._insert: Any = (sqlite_insert if self._sqlite else
                             postgresql_insert if self._postgres else None)
        # One writer at a time in this process: SQLite's busy handler would otherwise
        # sleep between retries while our own threads queue for its write lock.
        self._write_lock = threading.RLock() if self._sqlite else _NoLock()
        # In memory, readers share the one connection, so they take the lock too.
        self._read_lock = self._write_lock if memory else _NoLock()
        # The hot writes (events stored, steps, records, outcomes) on a SQLite file: one
        # writer thread on the driver, one commit per group of writes (ledger.hot).
        self._hot: GroupWriter | None = None
        if self._sqlite and not memory and os.environ.get(HOT_ENV, "1") != "0":
            self._hot = GroupWriter(parsed.database or "", self._write_lock)
        # The hot writes on PostgreSQL: one statement each on the driver (ledger.pgdirect).
        self._direct: Direct | None = None
        if self._postgres and os.environ.get(HOT_ENV, "1") != "0":
            from callbridge.ledger.pgdirect import Direct

            self._direct = Direct(self.engine)
        # The hash key, once this ledger has one (migrate() makes it; callbridge.markers).
        self.hash_key: HashKey | None = read_hash_key(self._reader, self._cipher)
        if self.hash_key is not None:
            self._cipher.use_mac_key(self.hash_key.key)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._read_lock, self._reader.connect() as conn:
            yield conn

    def _retrying(self, fn: Callable[[], T]) -> T:
        """Run a write transaction again when a concurrent insert won a unique key.

        On SQLite every writer holds the write lock from BEGIN, so this never
        happens; on PostgreSQL two processes can both find no row and both insert.
        """
        for attempt in range(3):
            try:
                return fn()
            except sa.exc.IntegrityError:
                if self._sqlite or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _sqlite_setup(engine: Engine, *, immediate: bool) -> None:
        @sa_event.listens_for(engine, "connect")
        def connect(dbapi: Any, _record: Any) -> None:
            dbapi.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi.cursor()
            # secure_delete: erased contents are overwritten, not left in free space.
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON",
                           "secure_delete=ON",
                           "busy_timeout=30000"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def begin(conn: Connection) -> None:
            # A write transaction takes the write lock up front: a claim's SELECT and
            # UPDATE cannot interleave with another process's.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @staticmethod
    def generate_key() -> str:
        """A new key for ``CALLBRIDGE_SECRET_KEY``."""
        return Cipher.generate_key()

    def migrate(self) -> None:
        """Bring the schema to the newest migration (Alembic ``upgrade head``)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._write_lock, self.engine.begin() as conn:
            # Processes starting together migrate one after the other: on SQLite the
            # transaction's BEGIN IMMEDIATE does it, on PostgreSQL an advisory lock.
            if self._postgres:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATE_LOCK})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            # The hash key: made once, then never changed (callbridge.markers).
            hash_key = load_hash_key(conn, self._cipher, self._cipher.mac_key)
            self._cipher.use_mac_key(hash_key.key)
            hash_event_ids(conn, self._cipher)  # once, for a ledger from before
        self.hash_key = hash_key

    def _event_id(self, tenant: str, source: str, kind: str, event_id: str) -> str:
        """How ``events.source_id`` holds an event id: a keyed hash."""
        return event_id_hash(self._cipher, tenant, source, kind, event_id)

    def marker_for(self, event: AnyEvent, first_attempt_at: datetime | None = None) -> str:
        """The marker a delivery of ``event`` writes into its app: keyed (``cb2-``), or
        the old ``cb1-`` for a delivery first attempted before this ledger had its hash
        key (:func:`callbridge.markers.marker_for`)."""
        if self.hash_key is None:
            raise RuntimeError("the ledger has no hash key yet: migrate() first")
        return marker_for(self.hash_key, event.key, first_attempt_at)

    def close(self) -> None:
        """Close the database connections."""
        if self._hot is not None:
            self._hot.close()
        if self._direct is not None:
            self._direct.close()
        self.engine.dispose()
        self._reader.dispose()

    def _now(self) -> datetime:
        return self.clock.now()

    def _fenced(self, conn: Connection, claim: Claim, stmt: Any = _FENCED, **values: Any) -> None:
        result = conn.execute(stmt, {"_did": claim.delivery_id, "_fence": claim.fence,
                                     "_owner": claim.owner, **values})
        if result.rowcount != 1:
            raise LeaseLost(
                f"delivery {claim.delivery_id}: fence {claim.fence} is no longer current")

    def _records(self, conn: Connection, ids: Sequence[int]) -> dict[int, tuple[Record, ...]]:
        out: dict[int, list[Record]] = {}
        if not ids:
            return {}
        for r in conn.execute(_SELECT_RECORDS, {"ids": list(ids)}):
            out.setdefault(r.delivery_id, []).append(Record(kind=r.kind, id=r.app_id, step=r.step))
        return {k: tuple(v) for k, v in out.items()}

    def _upsert(self, conn: Connection, table: sa.Table, keys: dict[str, Any],
                values: dict[str, Any]) -> None:
        if self._insert is not None:  # one statement: safe against a concurrent insert
            conn.execute(self._insert(table).values(**keys, **values).on_conflict_do_update(
                index_elements=list(keys), set_=values))
            return
        cond = [table.c[k] == v for k, v in keys.items()]
        if conn.execute(table.update().where(*cond).values(**values)).rowcount == 0:
            conn.execute(table.insert().values(**keys, **values))
