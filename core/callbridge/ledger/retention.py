"""Retention and erasure: contents erased, outcomes and record ids kept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from callbridge.ledger import tables as t
from callbridge.ledger._base import (
    LedgerCore,
)


class RetentionMixin(LedgerCore):
    """Purging and erasing."""

    def _erase(self, conn: Connection, event_ids: Sequence[int], now: datetime) -> None:
        if not event_ids:
            return
        ids = list(event_ids)
        if self._direct is not None:  # none of them is loaded from a claim's copy
            self._direct.forget_contents()
        conn.execute(t.events.update().where(t.events.c.id.in_(ids)).values(
            content_enc=None, source_id_enc=None, purged_at=now, party_hash=None))
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
        now = now or self._now()
        total = 0
        with self._write() as conn:
            for tenant, days in retention_days.items():
                ids = [r[0] for r in conn.execute(sa.select(t.events.c.id).where(
                    t.events.c.tenant == tenant, t.events.c.purged_at.is_(None),
                    t.events.c.occurred_at < now - timedelta(days=days)))]
                self._erase(conn, ids, now)
                total += len(ids)
            conn.execute(t.cache.delete().where(t.cache.c.expires_at <= now))
        self._scrub()
        return total

    def erase_person(self, tenant: str, e164: str) -> int:
        """Erase the contents of a tenant's events with this number, and its index rows."""
        digest = self._cipher.digest(tenant, e164)
        now = self._now()
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(sa.select(t.events.c.id).where(
                t.events.c.tenant == tenant, t.events.c.party_hash == digest))]
            self._erase(conn, ids, now)
            conn.execute(t.phone_index.delete().where(t.phone_index.c.tenant == tenant,
                                                      t.phone_index.c.number_hash == digest))
            # Cached values may hold the person's details under keys we cannot
            # recognise (they are hashed): the tenant's cache goes; it refills.
            conn.execute(t.cache.delete().where(t.cache.c.tenant == tenant))
        self._scrub()
        return len(ids)

    def erase_tenant(self, tenant: str) -> int:
        """Erase everything a tenant's data is made of: the contents of its events,
        its phone index, cache, key-value entries and tokens. Outcomes and record
        ids stay (what was logged where). Returns how many events were erased."""
        if not tenant:  # the ledger's own entries (its hash key) have no tenant
            raise ValueError("tenant: must not be empty")
        now = self._now()
        with self._write() as conn:
            ids = [r[0] for r in conn.execute(sa.select(t.events.c.id).where(
                t.events.c.tenant == tenant, t.events.c.purged_at.is_(None)))]
            self._erase(conn, ids, now)
            for table in (t.phone_index, t.index_state, t.cache, t.kv, t.tokens):
                conn.execute(table.delete().where(table.c.tenant == tenant))
        self._scrub()
        return len(ids)
