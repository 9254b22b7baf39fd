"""Coordination across processes: OAuth tokens, and named locks with fencing tokens.

A lock is a row in ``locks`` keyed by the keyed hash of its name (names may hold
phone numbers), with an owner, an expiry and a **fence**: a number raised by
one each time the lock changes hands and never lowered (the row stays when the
lock is released), so a holder that paused past its expiry can tell, and be
told, that its writes are stale (:meth:`CoordinationMixin.check_fence`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callbridge.ledger import tables as t
from callbridge.ledger._base import LedgerCore
from callbridge.ledger.types import LockHandle, LockLost

_FREE = datetime(1970, 1, 1, tzinfo=UTC)  # the expiry of a released lock
_POLL = 0.05  # seconds between tries while waiting for a lock


class CoordinationMixin(LedgerCore):
    """Tokens and locks."""

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
                          "updated_at": self._now()})

    def lock_name_hash(self, name: str) -> str:
        """The keyed hash a lock's name is stored as."""
        return self._cipher.digest("lock", name)

    def acquire_lock(self, name: str, *, ttl: float = 30.0, wait: float = 30.0) -> LockHandle:
        """Take a named lock shared by every process on this database, for ``ttl``
        seconds (renew it with :meth:`renew_lock` while working).

        Waits up to ``wait`` seconds for a holder to release it or for its expiry,
        then raises :class:`TimeoutError` (the name is not repeated: it may hold
        personal data).
        """
        handle = self.try_lock(name, ttl=ttl)
        deadline = time.monotonic() + wait
        while handle is None:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"a ledger lock is held by another process (waited {wait:g} s)")
            time.sleep(_POLL)
            handle = self.try_lock(name, ttl=ttl)
        return handle

    def try_lock(self, name: str, *, ttl: float = 30.0) -> LockHandle | None:
        """Take the lock if it is free or expired, at once; None if it is held."""
        name_hash, owner = self.lock_name_hash(name), uuid.uuid4().hex
        now = self._now()
        expires = now + timedelta(seconds=ttl)
        lk = t.locks
        with self._write() as conn:
            if self._insert is not None:
                # Taken if free, or taken over if expired; one statement either way.
                # RETURNING says which (rowcount of an upsert is not reliable on every driver).
                fence = conn.execute(self._insert(lk).values(
                    name_hash=name_hash, owner=owner, expires_at=expires, fence=1,
                ).on_conflict_do_update(
                    index_elements=["name_hash"],
                    set_={"owner": owner, "expires_at": expires, "fence": lk.c.fence + 1},
                    where=lk.c.expires_at < now).returning(lk.c.fence)).scalar()
            else:
                fence = self._portable_take(conn, name_hash, owner, expires, now)
        return None if fence is None else LockHandle(name_hash, owner, int(fence))

    @staticmethod
    def _portable_take(conn: Connection, name_hash: str, owner: str, expires: datetime,
                       now: datetime) -> int | None:
        lk = t.locks
        held = conn.execute(sa.select(lk.c.fence).where(lk.c.name_hash == name_hash)).first()
        if held is None:
            conn.execute(lk.insert().values(name_hash=name_hash, owner=owner,
                                            expires_at=expires, fence=1))
            return 1
        taken = conn.execute(lk.update().where(
            lk.c.name_hash == name_hash, lk.c.expires_at < now).values(
            owner=owner, expires_at=expires, fence=lk.c.fence + 1)).rowcount
        return int(held.fence) + 1 if taken else None

    def renew_lock(self, handle: LockHandle, ttl: float = 30.0) -> None:
        """Hold the lock ``ttl`` more seconds from now; :class:`LockLost` if it has
        changed hands (it expired and another process took it)."""
        lk = t.locks
        with self._write() as conn:
            if conn.execute(lk.update().where(*self._held(handle)).values(
                    expires_at=self._now() + timedelta(seconds=ttl))).rowcount != 1:
                raise LockLost("a ledger lock was lost: it expired and another process took it")

    def check_fence(self, handle: LockHandle) -> None:
        """:class:`LockLost` unless this handle still holds the lock now (fence and
        owner current, not expired)."""
        with self._read() as conn:
            row = conn.execute(sa.select(t.locks.c.expires_at).where(*self._held(handle))).first()
        if row is None or row.expires_at < self._now():
            raise LockLost("a ledger lock is no longer held by this process")

    def release_lock(self, handle: LockHandle) -> None:
        """Release the lock if this handle still holds it (one that expired and passed
        on is left to its new holder). The fence stays, so it only ever rises."""
        with self._write() as conn:
            conn.execute(t.locks.update().where(*self._held(handle)).values(
                owner="", expires_at=_FREE))

    @staticmethod
    def _held(handle: LockHandle) -> list[Any]:
        lk = t.locks
        return [lk.c.name_hash == handle.name_hash, lk.c.owner == handle.owner,
                lk.c.fence == handle.fence]

    @contextmanager
    def lock(self, name: str, *, ttl: float = 30.0, wait: float = 30.0) -> Iterator[LockHandle]:
        """Hold a named lock shared by every process on this database (see :meth:`acquire_lock`)."""
        handle = self.acquire_lock(name, ttl=ttl, wait=wait)
        try:
            yield handle
        finally:
            self.release_lock(handle)
