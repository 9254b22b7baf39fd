"""The ledger: every event received, one delivery per (tenant, app, event), what was
written in each app, and every attempt — the source of truth (docs/ledger.md).

SQLAlchemy 2 Core, a SQLite file by default, any SQLAlchemy URL otherwise,
Alembic migrations. Synchronous and thread-safe: the async engine calls it
through ``asyncio.to_thread``.

Claims: a delivery is claimed under a lease (owner, expiry) and a fencing
token (``fence``, raised by every claim). Every write made for a claim checks
the token, so a process that paused past its lease and lost the delivery to
another cannot write: it gets :class:`LeaseLost`. On SQLite every write
transaction starts with ``BEGIN IMMEDIATE``, so a claim's read and update are
one step across processes; on PostgreSQL claims use ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from callbridge.errors import CallbridgeError
from callbridge.events import AnyEvent, dump_event, merge_revisions, parse_event
from callbridge.ledger import tables as t
from callbridge.ledger.crypto import Cipher
from callbridge.markers import HashKey, load_hash_key, marker_for, read_hash_key
from callbridge.models import Contact, Outcome, Record

__all__ = [
    "AlreadyLogged", "AttemptView", "Claim", "ContentErased", "DeliveryView", "DuplicateRecord",
    "IndexEntry",
    "LeaseLost", "Ledger", "LedgerStore", "LedgerTokenStore", "Stored",
]

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")
_MIGRATE_LOCK = 0x63616C6C  # any fixed number: the advisory lock of migrations
FINAL_OK = ("logged", "accepted")
#: The states a delivery may leave without anyone's help (SPEC §2.6).
NOT_ENDED = ("pending", "waiting", "parked")
#: Sub-states (``reason``) of waiting and parked deliveries.
WAITING_REASONS = ("rate_limit", "delay", "backoff")
PARKED_REASONS = ("reauthorise", "daily_limit", "config_error")
DEFAULT_DEADLINE_HOURS = 72.0


class LeaseLost(CallbridgeError):
    """This process's claim on a delivery is no longer valid: another one owns it."""


class ContentErased(CallbridgeError):
    """The event's contents were erased (retention or a person's request)."""


class AlreadyLogged(CallbridgeError):
    """A delivery already logged (or accepted) cannot be put back to be logged again."""


class DuplicateRecord(CallbridgeError):
    """A second, different record for a (kind, step) the delivery already has a record
    for: a bug in the host or the plugin; the first record is kept."""


@dataclass(frozen=True)
class Stored:
    """What :meth:`Ledger.store_event` did with an event.

    ``event`` is the event as the ledger now holds it: the one given, or, when a
    stale copy arrived after a richer one, the richer contents kept (SPEC §4).
    """

    event_pk: int
    status: Literal["new", "duplicate", "revision"]
    revision: int
    event: AnyEvent | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Claim:
    """A delivery leased to one owner: the fence every write for it must carry, and
    what a retry resumes from (``records``; ``revision`` of the event when claimed)."""

    delivery_id: int
    event_pk: int
    tenant: str
    app: str
    kind: str
    fence: int
    attempt: int
    first_attempt_at: datetime
    records: tuple[Record, ...]
    chosen_contact_ids: tuple[str, ...] | None
    needs_update: bool
    notes: str | None
    mode: str
    owner: str
    revision: int = 0
    deadline_at: datetime | None = None
    #: The (kind, step) pairs an earlier attempt began writing (``begin_step``);
    #: one without a record in ``records`` is an uncertain write.
    begun: frozenset[tuple[str, str]] = frozenset()


@dataclass(frozen=True)
class DeliveryView:
    """One delivery as history shows it: its current outcome, records and attempt count."""

    delivery_id: int
    event_pk: int
    tenant: str
    app: str
    source: str
    kind: str
    source_id: str
    occurred_at: datetime
    status: str
    reason: str | None
    message: str | None
    retryable: bool
    next_attempt_at: datetime | None
    records: tuple[Record, ...]
    attempts: int
    updated_at: datetime
    candidates: tuple[Contact, ...]
    mode: str
    deadline_at: datetime | None = None


@dataclass(frozen=True)
class AttemptView:
    """One attempt of a delivery, as appended by :meth:`Ledger.finish`."""

    attempt: int
    fence: int
    started_at: datetime | None
    finished_at: datetime
    status: str
    reason: str | None
    message: str | None
    retryable: bool
    next_attempt_at: datetime | None


@dataclass(frozen=True)
class IndexEntry:
    """A contact the phone index holds for a number."""

    contact_id: str
    updated_at: datetime | None
    name: str | None
    checked_at: datetime | None


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _now() -> datetime:
    return datetime.now(UTC)


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


def _new_delivery(pk: int, tenant: str, app: str, occurred_at: datetime, now: datetime,
                  deadline: timedelta, **values: Any) -> dict[str, Any]:
    # The deadline runs from the event, or from its arrival when it arrives late
    # (an import of last month's calls gets the same time to get through).
    return {"deadline_at": max(occurred_at, now) + deadline, "event_id": pk, "tenant": tenant, "app": app, "occurred_at": occurred_at,
            "status": "pending", "mode": values.get("mode", "auto"), "retryable": False,
            "needs_update": False, "fence": 0, "attempt": 0, "updated_at": now,
            "notes_enc": values.get("notes_enc"), "chosen_contact_ids": values.get("chosen"),
            "reason": None, "message": None, "next_attempt_at": None, "not_before": None,
            "candidates_enc": None, "lease_owner": None, "lease_expires": None,
            "first_attempt_at": None}


def _keep_late_details(stored: dict[str, Any], given: dict[str, Any]) -> dict[str, Any] | None:
    """The copy to keep (:func:`callbridge.events.merge_revisions`: the furthest state,
    then the highest sequence; late details never lost); None when ``given`` adds
    nothing to ``stored``."""
    return merge_revisions(stored, given)


def settle(outcome: Outcome, deadline_at: datetime | None,
           now: datetime) -> tuple[str, str | None, str | None, datetime | None]:
    """The (status, reason, message, next attempt) the ledger keeps for an outcome.

    A failed outcome marked retryable (hook API 1.x) waits: for ``rate_limit``
    when the app's rate limit refused it, else in ``backoff``, its error kept in
    the message. A backoff that would end past the delivery's deadline ends it:
    the delivery is ``dead`` (reason ``deadline``), the last error kept.
    """
    status, reason = outcome.status.value, outcome.reason
    message, next_at = outcome.message, outcome.next_attempt_at
    if status == "failed" and outcome.retryable:
        status, message = "waiting", message or reason
        reason = "rate_limit" if reason in ("rate_limited", "rate_limit") else "backoff"
    if (status == "waiting" and reason == "backoff" and deadline_at is not None
            and (next_at or now) > deadline_at):
        status, reason, next_at = "dead", "deadline", None
    return status, reason, message, next_at


class Ledger:
    """One per process. See the module docstring."""

    def __init__(self, url: str, *, secret_key: str | None = None,
                 deadline_hours: float = DEFAULT_DEADLINE_HOURS) -> None:
        self.url = url
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
        self.hash_key = hash_key
        self._cipher.use_mac_key(hash_key.key)

    def marker_for(self, event: AnyEvent, first_attempt_at: datetime | None = None) -> str:
        """The marker a delivery of ``event`` writes into its app: keyed (``cb2-``), or
        the old ``cb1-`` for a delivery first attempted before this ledger had its hash
        key (:func:`callbridge.markers.marker_for`)."""
        if self.hash_key is None:
            raise RuntimeError("the ledger has no hash key yet: migrate() first")
        return marker_for(self.hash_key, event.key, first_attempt_at)

    def close(self) -> None:
        """Close the database connections."""
        self.engine.dispose()
        self._reader.dispose()

    # --- events --------------------------------------------------------------------------

    def store_event(self, event: AnyEvent, *, apps: Sequence[str],
                    received_at: datetime | None = None) -> Stored:
        """Keep an event (new, duplicate or revision) and its deliveries to ``apps``.

        The newest contents live on the event row; a revision moves the contents it
        replaces to ``event_revisions``, so every revision received is kept. A late
        detail already received (recording, transcript, summary, notes) is never
        dropped because an older copy of the event arrived after it: a webhook
        retried out of order is a duplicate, not a revision that loses the detail.
        """
        return self._retrying(lambda: self._store_event(event, apps, received_at or _now()))

    def _store_event(self, event: AnyEvent, apps: Sequence[str], now: datetime) -> Stored:
        content = dump_event(event)
        chash = self._cipher.digest("content", content)
        tenant, source, kind, source_id = event.key
        ident = {"tenant": tenant, "source": source, "kind": kind, "source_id": source_id}
        with self._write() as conn:
            row = conn.execute(_SELECT_EVENT, ident).first()
            if row is None:
                pk = conn.execute(t.events.insert(), {
                    **ident, "occurred_at": event.occurred_at, "received_at": now,
                    "revision": 1, "content_hash": chash, "party_hash": self._party(event),
                    "content_enc": self._cipher.encrypt(content),
                }).inserted_primary_key[0]  # type: ignore[index]
                if apps:
                    conn.execute(t.deliveries.insert(), [
                        _new_delivery(pk, tenant, app, event.occurred_at, now, self.deadline)
                        for app in apps])
                return Stored(event_pk=int(pk), status="new", revision=1, event=event)
            pk, revision = int(row.id), int(row.revision)
            if row.purged_at is not None:
                # Erased (retention or a person's request): a copy sent again must
                # not bring the contents back, and nothing can be logged from it.
                return Stored(event_pk=pk, status="duplicate", revision=revision, event=None)
            if row.content_hash == chash:
                return self._duplicate(conn, pk, revision, None, event, apps, now)
            stored_text = self._cipher.decrypt(conn.execute(
                sa.select(t.events.c.content_enc).where(t.events.c.id == pk)).scalar())
            merged = _keep_late_details(json.loads(stored_text or "{}"), json.loads(content))
            if merged is None:  # an older copy: everything it holds is kept already
                return self._duplicate(conn, pk, revision, stored_text, event, apps, now)
            if merged != json.loads(content):
                event = parse_event(merged)
                content = dump_event(event)
                chash = self._cipher.digest("content", content)
            conn.execute(t.event_revisions.insert().from_select(
                ["event_id", "revision", "received_at", "content_enc"],
                sa.select(t.events.c.id, t.events.c.revision, t.events.c.received_at,
                          t.events.c.content_enc).where(t.events.c.id == pk)))
            revision += 1
            conn.execute(t.events.update().where(t.events.c.id == pk).values(
                revision=revision, content_hash=chash, content_enc=self._cipher.encrypt(content),
                party_hash=self._party(event), occurred_at=event.occurred_at, received_at=now))
            # A log already written (or being written now, under a lease) holds older
            # contents: it is updated in place with the late details (SPEC §4).
            d = t.deliveries
            conn.execute(d.update().where(
                d.c.event_id == pk, sa.or_(d.c.status.in_(FINAL_OK), d.c.lease_owner.is_not(None))
            ).values(needs_update=True, updated_at=now))
            self._add_deliveries(conn, pk, tenant, event.occurred_at, apps, now)
        return Stored(event_pk=pk, status="revision", revision=revision, event=event)

    def _duplicate(self, conn: Connection, pk: int, revision: int, stored_text: str | None,
                   given: AnyEvent, apps: Sequence[str], now: datetime) -> Stored:
        occurred = conn.execute(sa.select(t.events.c.tenant, t.events.c.occurred_at)
                                .where(t.events.c.id == pk)).one()
        self._add_deliveries(conn, pk, occurred.tenant, occurred.occurred_at, apps, now)
        held = parse_event(stored_text) if stored_text is not None else given
        return Stored(event_pk=pk, status="duplicate", revision=revision, event=held)

    def _party(self, event: AnyEvent) -> str | None:
        """The keyed hash of the event's external number, for :meth:`erase_person`."""
        number = event.external.number
        return self._cipher.digest(event.tenant, number) if number else None

    def _add_deliveries(self, conn: Connection, pk: int, tenant: str, occurred_at: datetime,
                        apps: Iterable[str], now: datetime, **values: Any) -> dict[str, int]:
        have = {r.app: r.id for r in conn.execute(
            sa.select(t.deliveries.c.app, t.deliveries.c.id).where(t.deliveries.c.event_id == pk))}
        for app in apps:
            if app not in have:
                row = _new_delivery(pk, tenant, app, occurred_at, now, self.deadline, **values)
                result = conn.execute(t.deliveries.insert(), row)
                have[app] = int(result.inserted_primary_key[0])  # type: ignore[index]
        return have

    def store_events(self, events: Sequence[tuple[AnyEvent, Sequence[str]]]) -> list[Stored]:
        """:meth:`store_event` for many events, each in its own transaction."""
        return [self.store_event(event, apps=apps) for event, apps in events]

    def load_event(self, event_pk: int) -> AnyEvent:
        """The event's newest contents; :class:`ContentErased` once purged or erased."""
        with self._read() as conn:
            row = conn.execute(sa.select(t.events.c.content_enc, t.events.c.purged_at)
                               .where(t.events.c.id == event_pk)).one()
        if row.content_enc is None:
            raise ContentErased(f"event {event_pk}: contents erased on {row.purged_at:%Y-%m-%d}")
        return parse_event(self._cipher.decrypt(row.content_enc) or "")

    def find_event(self, tenant: str, source: str, kind: str, source_id: str) -> int | None:
        """The event's key in the ledger, by its identity; None if never received."""
        with self._read() as conn:
            return conn.execute(sa.select(t.events.c.id).where(
                t.events.c.tenant == tenant, t.events.c.source == source,
                t.events.c.kind == kind, t.events.c.source_id == source_id)).scalar()

    def add_delivery(self, event_pk: int, app: str, *, mode: str = "auto", notes: str | None = None,
                     chosen_contact_ids: Sequence[str] | None = None) -> int:
        """The event's delivery to ``app``, made if missing (manual and delayed logging).

        Idempotent: an existing delivery is returned unchanged.
        """
        return self._retrying(lambda: self._add_delivery(event_pk, app, mode, notes,
                                                         chosen_contact_ids))

    def _add_delivery(self, event_pk: int, app: str, mode: str, notes: str | None,
                      chosen_contact_ids: Sequence[str] | None) -> int:
        with self._write() as conn:
            ev = conn.execute(sa.select(t.events.c.tenant, t.events.c.occurred_at)
                              .where(t.events.c.id == event_pk)).one()
            have = self._add_deliveries(
                conn, event_pk, ev.tenant, ev.occurred_at, [app], _now(), mode=mode,
                notes_enc=self._cipher.encrypt(notes),
                chosen=None if chosen_contact_ids is None else json.dumps(list(chosen_contact_ids)))
            return int(have[app])

    # --- claims ----------------------------------------------------------------------------

    def claim(self, *, owner: str, limit: int, lease_seconds: float, now: datetime | None = None,
              tenant: str | None = None, apps: Sequence[str] | None = None,
              event_pks: Sequence[int] | None = None,
              modes: Sequence[str] | None = None) -> list[Claim]:
        """Lease up to ``limit`` due deliveries to ``owner``; each claim raises the fence."""
        now = now or _now()
        d = t.deliveries
        # Pending, and waiting once its time has come; never parked. A failed update of
        # a logged event waits like any other delivery, and once it gives up is not due.
        due = sa.or_(
            d.c.status == "pending",
            sa.and_(d.c.status == "waiting",
                    sa.or_(d.c.next_attempt_at.is_(None), d.c.next_attempt_at <= now)),
            sa.and_(d.c.needs_update.is_(True), d.c.status.in_(FINAL_OK)))
        free = sa.or_(d.c.lease_expires.is_(None), d.c.lease_expires < now)
        held_back = sa.and_(d.c.not_before.is_not(None), d.c.not_before > now)
        query = (sa.select(d).where(due, free, sa.not_(held_back))
                 .order_by(d.c.occurred_at, d.c.id).limit(limit))
        if tenant is not None:
            query = query.where(d.c.tenant == tenant)
        if apps is not None:
            query = query.where(d.c.app.in_(list(apps)))
        if event_pks is not None:
            query = query.where(d.c.event_id.in_(list(event_pks)))
        if modes is not None:
            query = query.where(d.c.mode.in_(list(modes)))
        if not self._sqlite:
            query = query.with_for_update(skip_locked=True)
        expires = now + timedelta(seconds=lease_seconds)
        claims: list[Claim] = []
        with self._write() as conn:
            rows = conn.execute(query).all()
            if not rows:
                return []
            kinds = {e.id: (e.kind, e.revision) for e in conn.execute(
                sa.select(t.events.c.id, t.events.c.kind, t.events.c.revision).where(
                    t.events.c.id.in_([r.event_id for r in rows])))}
            recs = self._records(conn, [r.id for r in rows])
            begun: dict[int, set[tuple[str, str]]] = {}
            for s in conn.execute(sa.select(t.steps.c.delivery_id, t.steps.c.kind, t.steps.c.step)
                                  .where(t.steps.c.delivery_id.in_([r.id for r in rows]))):
                begun.setdefault(s.delivery_id, set()).add((s.kind, s.step))
            conn.execute(_CLAIM, [
                {"did": r.id, "owner": owner, "expires": expires, "fence": r.fence + 1,
                 "attempt": r.attempt + 1, "first": r.first_attempt_at or now, "now": now}
                for r in rows])
            for r in rows:
                first = r.first_attempt_at or now
                claims.append(Claim(
                    delivery_id=r.id, event_pk=r.event_id, tenant=r.tenant, app=r.app,
                    kind=kinds[r.event_id][0], revision=kinds[r.event_id][1],
                    fence=r.fence + 1, attempt=r.attempt + 1,
                    first_attempt_at=first, records=recs.get(r.id, ()),
                    chosen_contact_ids=tuple(json.loads(r.chosen_contact_ids))
                    if r.chosen_contact_ids else None,
                    needs_update=bool(r.needs_update), notes=self._cipher.decrypt(r.notes_enc),
                    mode=r.mode, owner=owner, deadline_at=r.deadline_at,
                    begun=frozenset(begun.get(r.id, ()))))
        return claims

    def _fenced(self, conn: Connection, claim: Claim, stmt: Any = _FENCED, **values: Any) -> None:
        result = conn.execute(stmt, {"_did": claim.delivery_id, "_fence": claim.fence,
                                     "_owner": claim.owner, **values})
        if result.rowcount != 1:
            raise LeaseLost(
                f"delivery {claim.delivery_id}: fence {claim.fence} is no longer current")

    def renew(self, claim: Claim, lease_seconds: float) -> None:
        """Extend the lease from now; :class:`LeaseLost` if another owner has the delivery."""
        now = _now()
        with self._write() as conn:
            self._fenced(conn, claim, lease_expires=now + timedelta(seconds=lease_seconds))

    def begin_step(self, claim: Claim, kind: str, key: str) -> None:
        """Note, under the claim's fence, that a write of (kind, key) is about to be sent.

        Called before the request that creates the record: if the attempt ends
        before :meth:`remember` keeps the result, a later attempt knows the write
        is uncertain (``Claim.begun``, :meth:`step_begun`) and looks for it first.
        """
        now = _now()
        row = {"delivery_id": claim.delivery_id, "kind": kind, "step": key,
               "fence": claim.fence, "begun_at": now}
        with self._write() as conn:
            self._fenced(conn, claim, updated_at=now)
            if self._insert is not None:
                conn.execute(self._insert(t.steps).values(**row).on_conflict_do_nothing())
            elif conn.execute(sa.select(t.steps.c.fence).where(
                    t.steps.c.delivery_id == claim.delivery_id, t.steps.c.kind == kind,
                    t.steps.c.step == key)).first() is None:
                conn.execute(t.steps.insert().values(**row))

    def step_begun(self, claim: Claim, kind: str, key: str) -> bool:
        """Whether any attempt of the delivery began the write of (kind, key)."""
        with self._read() as conn:
            return conn.execute(sa.select(t.steps.c.fence).where(
                t.steps.c.delivery_id == claim.delivery_id, t.steps.c.kind == kind,
                t.steps.c.step == key)).first() is not None

    def remember(self, claim: Claim, record: Record) -> None:
        """Keep a record written in the app, at once, under the claim's fence.

        The same record again is a no-op; a different record for a (kind, step)
        already kept raises :class:`DuplicateRecord` (the first one stays).
        """
        now = _now()
        with self._write() as conn:
            self._fenced(conn, claim, updated_at=now)
            if self._new_records(conn, claim.delivery_id, [record]):
                self._insert_records(conn, claim.delivery_id, [record], now)

    @staticmethod
    def _new_records(conn: Connection, delivery_id: int,
                     recs: Sequence[Record]) -> list[Record]:
        """The records not kept yet; :class:`DuplicateRecord` for one that differs from
        the record kept for its (kind, step)."""
        new: dict[tuple[str, str], Record] = {}
        for rec in recs:
            key = (rec.kind, rec.step)
            kept = new[key].id if key in new else conn.execute(
                _SELECT_RECORD, {"did": delivery_id, "kind": rec.kind, "step": rec.step}).scalar()
            if kept is None:
                new[key] = rec
            elif kept != rec.id:
                raise DuplicateRecord(
                    f"delivery {delivery_id}: a second {rec.kind!r} record for step "
                    f"{rec.step!r}; the first one is kept")
        return list(new.values())

    def _insert_records(self, conn: Connection, delivery_id: int, recs: Sequence[Record],
                        now: datetime) -> None:
        if recs:
            conn.execute(t.records.insert(), [
                {"delivery_id": delivery_id, "kind": r.kind, "app_id": r.id, "step": r.step,
                 "created_at": now} for r in recs])

    def finish(self, claim: Claim, outcome: Outcome, *, now: datetime | None = None,
               started_at: datetime | None = None) -> None:
        """Record the attempt's outcome (appended) and make it current, under the fence.

        After a log, the delivery still needs an update only if a newer revision of
        the event arrived while it was being written. A failed update that will be
        retried keeps asking for the update; any other outcome ends the request.
        """
        now = now or _now()
        status, reason, message, next_at = settle(outcome, claim.deadline_at, now)
        ok = status in FINAL_OK
        retry = status in ("waiting", "parked")
        values: dict[str, Any] = {
            "status": status, "reason": reason, "message": message,
            "retryable": retry, "next_attempt_at": next_at,
            "lease_owner": None, "lease_expires": None, "updated_at": now,
            "candidates_enc": self._cipher.encrypt(json.dumps(
                [{"id": c.id, "name": c.name} for c in outcome.candidates]))
            if outcome.candidates else None,
        }
        if not ok and (not retry or not claim.needs_update):
            # Given up, skipped or unresolved: no update is pending any more. A first log
            # that will be retried writes the whole log with the newest contents anyway.
            values["needs_update"] = False
        if status == "waiting" and reason == "rate_limit":
            values["attempt"] = claim.attempt - 1  # waiting for room is not an attempt
        with self._write() as conn:
            if ok and self._sqlite:  # the write lock is held from BEGIN: the subquery is exact
                self._fenced(conn, claim, _FENCED_LOGGED, _revision=claim.revision, **values)
            elif ok:
                # A shared row lock: a revision being stored now commits first or waits.
                current = conn.execute(sa.select(t.events.c.revision).where(
                    t.events.c.id == claim.event_pk).with_for_update(read=True)).scalar()
                values["needs_update"] = current is not None and current != claim.revision
                self._fenced(conn, claim, **values)
            else:
                self._fenced(conn, claim, **values)
            try:  # the records a log returned that were not remembered as they were made
                self._insert_records(conn, claim.delivery_id,
                                     self._new_records(conn, claim.delivery_id, outcome.records),
                                     now)
            except DuplicateRecord as exc:
                # Not dropped in silence: the attempt fails for good, saying which step.
                status, reason, message, next_at = "failed", "duplicate_record", str(exc), None
                retry = False
                conn.execute(t.deliveries.update().where(
                    t.deliveries.c.id == claim.delivery_id).values(
                    status=status, reason=reason, message=message, retryable=False,
                    next_attempt_at=None))
            conn.execute(t.attempts.insert(), {
                "delivery_id": claim.delivery_id, "attempt": claim.attempt, "fence": claim.fence,
                "started_at": started_at, "finished_at": now, "status": status,
                "reason": reason, "message": message, "retryable": retry,
                "next_attempt_at": next_at})

    def unpark(self, tenant: str, app: str, reason: str) -> int:
        """Release the (tenant, app)'s deliveries parked for ``reason`` (the connection
        was re-authorised, the daily limit reset, the configuration fixed): they are
        due again at once. Returns how many were released."""
        if reason not in PARKED_REASONS:
            raise ValueError(f"reason: must be one of {', '.join(PARKED_REASONS)}")
        d = t.deliveries
        with self._write() as conn:
            return int(conn.execute(d.update().where(
                d.c.tenant == tenant, d.c.app == app, d.c.status == "parked",
                d.c.reason == reason).values(
                status="pending", reason=None, retryable=False, next_attempt_at=None,
                updated_at=_now())).rowcount)

    def release(self, claim: Claim) -> None:
        """Give the lease back untouched (shutdown): the delivery is due again at once."""
        with self._write() as conn:
            try:
                self._fenced(conn, claim, lease_owner=None, lease_expires=None)
            except LeaseLost:
                pass

    # --- reading deliveries ----------------------------------------------------------------

    def _records(self, conn: Connection, ids: Sequence[int]) -> dict[int, tuple[Record, ...]]:
        out: dict[int, list[Record]] = {}
        if not ids:
            return {}
        for r in conn.execute(_SELECT_RECORDS, {"ids": list(ids)}):
            out.setdefault(r.delivery_id, []).append(Record(kind=r.kind, id=r.app_id, step=r.step))
        return {k: tuple(v) for k, v in out.items()}

    def records(self, delivery_id: int) -> tuple[Record, ...]:
        """The records kept for a delivery, in the order they were written."""
        with self._read() as conn:
            return self._records(conn, [delivery_id]).get(delivery_id, ())

    def _views(self, conn: Connection, where: list[Any], limit: int = 10**9,
               newest_first: bool = True) -> list[DeliveryView]:
        d, e = t.deliveries, t.events
        a = t.attempts
        # Waiting for room in a rate limit is not an attempt.
        count = (sa.select(sa.func.count()).where(
            a.c.delivery_id == d.c.id,
            sa.or_(a.c.status != "waiting", sa.func.coalesce(a.c.reason, "") != "rate_limit"))
            .correlate(d).scalar_subquery())
        query = (sa.select(d, e.c.source, e.c.kind, e.c.source_id, count.label("n_attempts"))
                 .join(e, e.c.id == d.c.event_id).where(*where).limit(limit)
                 .order_by(d.c.updated_at.desc() if newest_first else d.c.id, d.c.id.desc()))
        rows = conn.execute(query).all()
        recs = self._records(conn, [r.id for r in rows])
        views = []
        for r in rows:
            cands = json.loads(self._cipher.decrypt(r.candidates_enc) or "[]")
            views.append(DeliveryView(
                delivery_id=r.id, event_pk=r.event_id, tenant=r.tenant, app=r.app, source=r.source,
                kind=r.kind, source_id=r.source_id, occurred_at=r.occurred_at, status=r.status,
                reason=r.reason, message=r.message, retryable=bool(r.retryable),
                next_attempt_at=r.next_attempt_at, records=recs.get(r.id, ()),
                attempts=int(r.n_attempts), updated_at=r.updated_at, mode=r.mode,
                candidates=tuple(Contact(id=c["id"], name=c.get("name")) for c in cands),
                deadline_at=r.deadline_at))
        return views

    def delivery(self, delivery_id: int) -> DeliveryView:
        """One delivery's view; KeyError if there is none."""
        with self._read() as conn:
            views = self._views(conn, [t.deliveries.c.id == delivery_id])
        if not views:
            raise KeyError(f"no delivery {delivery_id}")
        return views[0]

    def find_delivery(self, tenant: str, app: str, event_pk: int) -> DeliveryView | None:
        """The event's delivery to ``app``, or None."""
        d = t.deliveries
        with self._read() as conn:
            views = self._views(
                conn, [d.c.tenant == tenant, d.c.app == app, d.c.event_id == event_pk])
        return views[0] if views else None

    def deliveries_of(self, event_pk: int) -> list[DeliveryView]:
        """Every delivery of an event, oldest first."""
        with self._read() as conn:
            return self._views(conn, [t.deliveries.c.event_id == event_pk], newest_first=False)

    def history(self, *, tenant: str | None = None, app: str | None = None,
                status: str | None = None,
                since: datetime | None = None, limit: int = 1000,
                event_pks: Sequence[int] | None = None) -> list[DeliveryView]:
        """Deliveries, most recently changed first, filtered as given."""
        d = t.deliveries
        where: list[Any] = []
        if tenant is not None:
            where.append(d.c.tenant == tenant)
        if app is not None:
            where.append(d.c.app == app)
        if status is not None:
            where.append(d.c.status == status)
        if since is not None:
            where.append(d.c.occurred_at >= since)
        if event_pks is not None:
            where.append(d.c.event_id.in_(list(event_pks)))
        with self._read() as conn:
            return self._views(conn, where, limit)

    def attempts(self, delivery_id: int) -> list[AttemptView]:
        """Every attempt of a delivery, in order."""
        with self._read() as conn:
            rows = conn.execute(sa.select(t.attempts).where(t.attempts.c.delivery_id == delivery_id)
                                .order_by(t.attempts.c.id)).all()
        return [AttemptView(attempt=r.attempt, fence=r.fence, started_at=r.started_at,
                            finished_at=r.finished_at, status=r.status, reason=r.reason,
                            message=r.message, retryable=bool(r.retryable),
                            next_attempt_at=r.next_attempt_at) for r in rows]

    def counts(self, *, tenant: str | None = None) -> dict[tuple[str, str], int]:
        """How many deliveries per (app, status)."""
        d = t.deliveries
        query = sa.select(d.c.app, d.c.status, sa.func.count()).group_by(d.c.app, d.c.status)
        if tenant is not None:
            query = query.where(d.c.tenant == tenant)
        with self._read() as conn:
            return {(a, s): int(n) for a, s, n in conn.execute(query)}

    # --- a user's choices and the modes ----------------------------------------------------

    def choose(self, delivery_id: int, contact_ids: Sequence[str], *,
               notes: str | None = None) -> None:
        """A user's pick for an unresolved (or skipped) delivery: it becomes due again.

        Raises :class:`AlreadyLogged` for a delivery already logged or accepted.
        """
        values: dict[str, Any] = {"chosen_contact_ids": json.dumps(list(contact_ids)),
                                  "mode": "manual"}
        if notes is not None:
            values["notes_enc"] = self._cipher.encrypt(notes)
        self._reopen(delivery_id, **values)

    def requeue(self, delivery_id: int, *, mode: str, not_before: datetime | None = None) -> None:
        """Put a delivery not logged back to pending (digest, manual, a dead one re-queued),
        with a new deadline.

        Raises :class:`AlreadyLogged` for a delivery already logged or accepted.
        """
        self._reopen(delivery_id, mode=mode, not_before=not_before)

    def _reopen(self, delivery_id: int, **values: Any) -> None:
        d = t.deliveries
        with self._write() as conn:
            # The check and the change are one statement: two users cannot both pass it.
            done = conn.execute(d.update().where(
                d.c.id == delivery_id, d.c.status.not_in(FINAL_OK)).values(
                status="pending", updated_at=_now(), next_attempt_at=None, retryable=False,
                deadline_at=_now() + self.deadline, **values)).rowcount
            if done == 0:
                row = conn.execute(
                    sa.select(d.c.app, d.c.status).where(d.c.id == delivery_id)).first()
                if row is None:
                    raise KeyError(f"no delivery {delivery_id}")
                raise AlreadyLogged(f"delivery {delivery_id} is already {row.status} in {row.app}; "
                                    "it is not logged twice")

    def schedule(self, delivery_id: int, not_before: datetime | None) -> None:
        """Hold a pending delivery until ``not_before`` (delayed logging); None frees it."""
        with self._write() as conn:
            conn.execute(t.deliveries.update().where(t.deliveries.c.id == delivery_id).values(
                not_before=not_before, updated_at=_now()))

    # --- key-value store -------------------------------------------------------------------

    def kv_get(self, tenant: str, app: str, key: str) -> str | None:
        """A key-value entry for one (tenant, app), decrypted; None if absent."""
        with self._read() as conn:
            blob = conn.execute(sa.select(t.kv.c.value_enc).where(
                t.kv.c.tenant == tenant, t.kv.c.app == app, t.kv.c.key == key)).scalar()
        return self._cipher.decrypt(blob)

    def kv_set(self, tenant: str, app: str, key: str, value: str) -> None:
        """Set a key-value entry (encrypted)."""
        with self._write() as conn:
            self._upsert(conn, t.kv, {"tenant": tenant, "app": app, "key": key},
                         {"value_enc": self._cipher.encrypt(value)})

    def kv_delete(self, tenant: str, app: str, key: str) -> None:
        """Remove a key-value entry, if present."""
        with self._write() as conn:
            conn.execute(t.kv.delete().where(t.kv.c.tenant == tenant, t.kv.c.app == app,
                                             t.kv.c.key == key))

    def _upsert(self, conn: Connection, table: sa.Table, keys: dict[str, Any],
                values: dict[str, Any]) -> None:
        if self._insert is not None:  # one statement: safe against a concurrent insert
            conn.execute(self._insert(table).values(**keys, **values).on_conflict_do_update(
                index_elements=list(keys), set_=values))
            return
        cond = [table.c[k] == v for k, v in keys.items()]
        if conn.execute(table.update().where(*cond).values(**values)).rowcount == 0:
            conn.execute(table.insert().values(**keys, **values))

    # --- the phone index -------------------------------------------------------------------

    def index_put(self, tenant: str, app: str, contact_id: str, e164s: Iterable[str], *,
                  updated_at: datetime | None, name: str | None,
                  now: datetime | None = None) -> None:
        """Replace a contact's rows: one per number, as a keyed hash; checked now."""
        now = now or _now()
        p = t.phone_index
        with self._write() as conn:
            conn.execute(p.delete().where(p.c.tenant == tenant, p.c.app == app,
                                          p.c.contact_id == contact_id))
            name_enc = self._cipher.encrypt(name)
            for number in dict.fromkeys(e164s):
                conn.execute(p.insert().values(
                    tenant=tenant, app=app, number_hash=self._cipher.digest(tenant, number),
                    contact_id=contact_id, updated_at=updated_at, name_enc=name_enc,
                    checked_at=now))

    def index_remove(self, tenant: str, app: str, contact_id: str) -> None:
        """Drop a contact's rows from the phone index (deleted in the app)."""
        p = t.phone_index
        with self._write() as conn:
            conn.execute(p.delete().where(p.c.tenant == tenant, p.c.app == app,
                                          p.c.contact_id == contact_id))

    def index_lookup(self, tenant: str, app: str, e164: str) -> list[IndexEntry]:
        """The contacts whose numbers include ``e164`` (compared as keyed hashes)."""
        p = t.phone_index
        with self._read() as conn:
            rows = conn.execute(sa.select(p).where(
                p.c.tenant == tenant, p.c.app == app,
                p.c.number_hash == self._cipher.digest(tenant, e164)).order_by(p.c.id)).all()
        return [IndexEntry(contact_id=r.contact_id, updated_at=r.updated_at,
                           name=self._cipher.decrypt(r.name_enc), checked_at=r.checked_at)
                for r in rows]

    def index_mark_checked(self, tenant: str, app: str, contact_id: str,
                           now: datetime | None = None) -> None:
        """Note that a contact's rows were confirmed against the app now."""
        p = t.phone_index
        with self._write() as conn:
            conn.execute(p.update().where(
                p.c.tenant == tenant, p.c.app == app, p.c.contact_id == contact_id,
            ).values(checked_at=now or _now()))

    def index_state(self, tenant: str, app: str) -> tuple[datetime | None, datetime | None]:
        """The index's (high-water mark, last sync time); (None, None) before the first sync."""
        s = t.index_state
        with self._read() as conn:
            row = conn.execute(sa.select(s.c.high_water, s.c.synced_at).where(
                s.c.tenant == tenant, s.c.app == app)).first()
        return (row.high_water, row.synced_at) if row else (None, None)

    def set_index_state(self, tenant: str, app: str, *, high_water: datetime | None,
                        synced_at: datetime) -> None:
        """Record a sync: the high-water mark to resume from and when it ran."""
        with self._write() as conn:
            self._upsert(conn, t.index_state, {"tenant": tenant, "app": app},
                         {"high_water": high_water, "synced_at": synced_at})

    # --- tokens and locks ------------------------------------------------------------------

    def token_get(self, tenant: str, app: str) -> dict[str, Any] | None:
        """The stored OAuth token for (tenant, app), decrypted; None if absent."""
        with self._read() as conn:
            blob = conn.execute(sa.select(t.tokens.c.token_enc).where(
                t.tokens.c.tenant == tenant, t.tokens.c.app == app)).scalar()
        text = self._cipher.decrypt(blob)
        return json.loads(text) if text else None

    def token_set(self, tenant: str, app: str, token: Mapping[str, Any]) -> None:
        """Store an OAuth token (encrypted), replacing the previous one."""
        with self._write() as conn:
            self._upsert(conn, t.tokens, {"tenant": tenant, "app": app},
                         {"token_enc": self._cipher.encrypt(json.dumps(dict(token))),
                          "updated_at": _now()})

    def acquire_lock(self, name: str, *, ttl: float = 30.0, wait: float = 30.0) -> str:
        """Take a named lock shared by every process on this database; returns the owner token."""
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        while True:
            if self._try_lock(name, owner, ttl):
                return owner
            if time.monotonic() >= deadline:
                raise TimeoutError(f"lock {name!r} is held by another process (waited {wait:g} s)")
            time.sleep(0.05)

    def _try_lock(self, name: str, owner: str, ttl: float) -> bool:
        now = _now()
        row = {"name": name, "owner": owner, "expires_at": now + timedelta(seconds=ttl)}
        with self._write() as conn:
            if self._insert is not None:
                # Taken if free, or taken over if expired; one statement either way.
                # RETURNING says which (rowcount of an upsert is not reliable on every driver).
                taken = conn.execute(self._insert(t.locks).values(**row).on_conflict_do_update(
                    index_elements=["name"], set_={"owner": owner, "expires_at": row["expires_at"]},
                    where=t.locks.c.expires_at < now).returning(t.locks.c.owner)).first()
                return taken is not None
            held = conn.execute(sa.select(t.locks).where(t.locks.c.name == name)).first()
            if held is None:
                conn.execute(t.locks.insert().values(**row))
                return True
            return bool(conn.execute(t.locks.update().where(
                t.locks.c.name == name, t.locks.c.expires_at < now).values(
                owner=owner, expires_at=row["expires_at"])).rowcount)

    def release_lock(self, name: str, owner: str) -> None:
        """Release a lock if ``owner`` still holds it (an expired one may have passed on)."""
        with self._write() as conn:
            conn.execute(t.locks.delete().where(t.locks.c.name == name, t.locks.c.owner == owner))

    @contextmanager
    def lock(self, name: str, *, ttl: float = 30.0, wait: float = 30.0) -> Iterator[None]:
        """Hold a named lock shared by every process on this database (see :meth:`acquire_lock`)."""
        owner = self.acquire_lock(name, ttl=ttl, wait=wait)
        try:
            yield
        finally:
            self.release_lock(name, owner)

    # --- retention and erasure -------------------------------------------------------------

    def _erase(self, conn: Connection, event_ids: Sequence[int], now: datetime) -> None:
        if not event_ids:
            return
        ids = list(event_ids)
        conn.execute(t.events.update().where(t.events.c.id.in_(ids)).values(
            content_enc=None, purged_at=now, party_hash=None))
        conn.execute(t.event_revisions.update().where(t.event_revisions.c.event_id.in_(ids))
                     .values(content_enc=None))
        conn.execute(t.deliveries.update().where(t.deliveries.c.event_id.in_(ids))
                     .values(notes_enc=None, candidates_enc=None))

    def _scrub(self) -> None:
        """After an erasure: on SQLite, the WAL copied into the file and truncated (the
        erased pages were overwritten, secure_delete being on); on PostgreSQL, the
        tables holding contents vacuumed, so dead rows are reclaimed now."""
        from callbridge.erasure import scrub

        with self._write_lock:
            scrub(self.engine)

    def purge(self, retention_days: Mapping[str, int], *, now: datetime | None = None) -> int:
        """Erase contents older than each tenant's retention; outcomes and record ids stay."""
        now = now or _now()
        total = 0
        with self._write() as conn:
            for tenant, days in retention_days.items():
                ids = [r[0] for r in conn.execute(sa.select(t.events.c.id).where(
                    t.events.c.tenant == tenant, t.events.c.purged_at.is_(None),
                    t.events.c.occurred_at < now - timedelta(days=days)))]
                self._erase(conn, ids, now)
                total += len(ids)
        self._scrub()
        return total

    def erase_person(self, tenant: str, e164: str) -> int:
        """Erase the contents of a tenant's events with this number, and its index rows."""
        digest = self._cipher.digest(tenant, e164)
        now = _now()
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(sa.select(t.events.c.id).where(
                t.events.c.tenant == tenant, t.events.c.party_hash == digest))]
            self._erase(conn, ids, now)
            conn.execute(t.phone_index.delete().where(t.phone_index.c.tenant == tenant,
                                                      t.phone_index.c.number_hash == digest))
        self._scrub()
        return len(ids)


class LedgerStore:
    """``ctx.store``: the ledger's key-value rows for one (tenant, app)."""

    def __init__(self, ledger: Ledger, tenant: str, app: str) -> None:
        self._ledger, self._tenant, self._app = ledger, tenant, app

    async def get(self, key: str) -> str | None:
        """The value for ``key``, or None."""
        return await asyncio.to_thread(self._ledger.kv_get, self._tenant, self._app, key)

    async def set(self, key: str, value: str) -> None:
        """Set ``key`` to ``value``."""
        await asyncio.to_thread(self._ledger.kv_set, self._tenant, self._app, key, value)

    async def delete(self, key: str) -> None:
        """Remove ``key``, if present."""
        await asyncio.to_thread(self._ledger.kv_delete, self._tenant, self._app, key)


class LedgerTokenStore:
    """OAuth tokens in the ledger, encrypted; the refresh lock holds across processes."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._local: dict[tuple[str, str], asyncio.Lock] = {}

    async def load(self, tenant: str, app: str) -> dict[str, Any] | None:
        """The stored token for (tenant, app), or None."""
        return await asyncio.to_thread(self._ledger.token_get, tenant, app)

    async def save(self, tenant: str, app: str, token: Mapping[str, Any]) -> None:
        """Store a refreshed or new token."""
        await asyncio.to_thread(self._ledger.token_set, tenant, app, token)

    @asynccontextmanager
    async def refresh_lock(self, tenant: str, app: str) -> AsyncIterator[None]:
        """Held around a token refresh: one at a time per (tenant, app), across processes."""
        local = self._local.setdefault((tenant, app), asyncio.Lock())
        async with local:
            name = f"oauth:{tenant}:{app}"
            # Waits past the lock's lifetime, so a crashed holder's lock is taken over.
            owner = await asyncio.to_thread(self._ledger.acquire_lock, name, ttl=30, wait=40)
            try:
                yield
            finally:
                await asyncio.to_thread(self._ledger.release_lock, name, owner)
