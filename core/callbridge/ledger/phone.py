"""The phone index: contacts by the keyed hash of each of their numbers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from callbridge.ledger import tables as t
from callbridge.ledger._base import (
    LedgerCore,
)
from callbridge.ledger.types import (
    IndexEntry,
)


class PhoneIndexMixin(LedgerCore):
    """The per-(tenant, app) index of contacts' numbers."""


    def index_put(self, tenant: str, app: str, contact_id: str, e164s: Iterable[str], *,
                  updated_at: datetime | None, name: str | None,
                  now: datetime | None = None) -> None:
        """Replace a contact's rows: one per number, as a keyed hash; checked now."""
        now = now or self._now()
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
            ).values(checked_at=now or self._now()))

    def index_state(self, tenant: str, app: str) -> tuple[datetime | None, datetime | None]:
        """The index's (high-water mark, last sync time); (None, None) before the first sync."""
        s = t.index_state
        with self._read() as conn:
            row = conn.execute(sa.select(s.c.high_water, s.c.synced_at).where(
                s.c.tenant == tenant, s.c.app == app)).first()
        return (row.high_water, row.synced_at) if row else (None, None)

    def index_sync_times(self) -> dict[tuple[str, str], datetime | None]:
        """Every index's last sync time, by (tenant, app), in one read."""
        s = t.index_state
        with self._read() as conn:
            return {(r.tenant, r.app): r.synced_at for r in conn.execute(
                sa.select(s.c.tenant, s.c.app, s.c.synced_at))}

    def set_index_state(self, tenant: str, app: str, *, high_water: datetime | None,
                        synced_at: datetime) -> None:
        """Record a sync: the high-water mark to resume from and when it ran."""
        with self._write() as conn:
            self._upsert(conn, t.index_state, {"tenant": tenant, "app": app},
                         {"high_water": high_water, "synced_at": synced_at})
