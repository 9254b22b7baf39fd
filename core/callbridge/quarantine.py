"""The quarantine: input refused at the edge, kept a while so an operator can look.

One place for every refused line of ``callbridge ingest`` and every refused body
a webhook receives. Each entry keeps the bytes as received (encrypted with the
ledger's key, cut to :attr:`QuarantineSettings.max_entry_bytes`), the line number,
the tenant when the input named a configured one, and the reason: field names and
problems, never values. The whole is bounded (:attr:`QuarantineSettings.max_total_bytes`:
the oldest entries go first) and purged with the tenant's retention, or after the
quarantine's own retention when no tenant is known. ``callbridge quarantine``
reads it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from callbridge.erasure import scrub
from callbridge.ledger import Ledger
from callbridge.ledger import tables as t
from callbridge.settings import QuarantineSettings

__all__ = ["Entry", "Quarantine", "Refused"]


@dataclass(frozen=True)
class Refused:
    """One refused input, as the reader or a webhook hands it to :meth:`Quarantine.keep`."""

    raw: bytes
    reason: str
    origin: str = "ingest"
    line: int | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class Entry:
    """One quarantined input, as :meth:`Quarantine.entries` lists it (no contents)."""

    id: int
    tenant: str | None
    origin: str
    line: int | None
    received_at: datetime
    reason: str
    size: int
    kept: int


class Quarantine:
    """The quarantine in one ledger."""

    def __init__(self, ledger: Ledger, settings: QuarantineSettings | None = None) -> None:
        self.ledger = ledger
        self.settings = settings or QuarantineSettings()

    def keep(self, refused: Sequence[Refused], *, now: datetime | None = None) -> int:
        """Add entries, then drop the oldest past the size bound. Returns how many were added."""
        if not refused:
            return 0
        now = now or datetime.now(UTC)
        cap = self.settings.max_entry_bytes
        cipher = self.ledger._cipher
        rows = [{
            "tenant": r.tenant, "origin": r.origin[:20], "line": r.line, "received_at": now,
            "reason": r.reason, "size": len(r.raw), "kept": min(len(r.raw), cap),
            "content_enc": cipher.encrypt(base64.b64encode(r.raw[:cap]).decode("ascii")),
        } for r in refused]
        with self.ledger.engine.begin() as conn:
            conn.execute(t.quarantine.insert(), rows)
            self._bound(conn)
        return len(rows)

    def _bound(self, conn: sa.Connection) -> None:
        q = t.quarantine
        total = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(q.c.kept), 0))).scalar_one()
        excess = int(total) - self.settings.max_total_bytes
        if excess <= 0:
            return
        drop: list[int] = []
        for row in conn.execute(sa.select(q.c.id, q.c.kept).order_by(q.c.id)):
            if excess <= 0:
                break
            drop.append(int(row.id))
            excess -= max(int(row.kept), 1)
        conn.execute(q.delete().where(q.c.id.in_(drop)))

    def entries(self, *, tenant: str | None = None, limit: int = 100) -> list[Entry]:
        """The newest entries first, without their contents."""
        q = t.quarantine
        query = sa.select(q.c.id, q.c.tenant, q.c.origin, q.c.line, q.c.received_at, q.c.reason,
                          q.c.size, q.c.kept).order_by(q.c.id.desc()).limit(limit)
        if tenant is not None:
            query = query.where(q.c.tenant == tenant)
        with self.ledger.engine.connect() as conn:
            return [Entry(**row._asdict()) for row in conn.execute(query)]

    def content(self, entry_id: int) -> bytes | None:
        """The bytes kept of one entry (the first ``kept`` bytes received); None if gone."""
        q = t.quarantine
        with self.ledger.engine.connect() as conn:
            blob = conn.execute(sa.select(q.c.content_enc).where(q.c.id == entry_id)).scalar()
        if blob is None:
            return None
        return base64.b64decode(self.ledger._cipher.decrypt(blob) or "")

    def purge(self, retention_days: Mapping[str, int], *, now: datetime | None = None) -> int:
        """Drop entries past their tenant's retention, or past the quarantine's own
        retention when the tenant is not known (or no longer configured)."""
        now = now or datetime.now(UTC)
        q = t.quarantine
        default = now - timedelta(days=self.settings.retention_days)
        conditions: list[Any] = [sa.and_(sa.or_(q.c.tenant.is_(None),
                                                q.c.tenant.not_in(list(retention_days))),
                                         q.c.received_at < default)]
        for tenant, days in retention_days.items():
            cutoff = now - timedelta(days=days)
            conditions.append(sa.and_(q.c.tenant == tenant, q.c.received_at < cutoff))
        with self.ledger.engine.begin() as conn:
            dropped = int(conn.execute(q.delete().where(sa.or_(*conditions))).rowcount or 0)
        return self._final(dropped)

    def erase_tenant(self, tenant: str) -> int:
        """Drop every entry of one tenant."""
        q = t.quarantine
        with self.ledger.engine.begin() as conn:
            dropped = int(conn.execute(q.delete().where(q.c.tenant == tenant)).rowcount or 0)
        return self._final(dropped)

    def erase_number(self, tenant: str, forms: Sequence[str]) -> int:
        """Drop the entries of ``tenant`` (and those whose tenant is not known) that hold
        any of ``forms`` of a person's number (:func:`callbridge.phones.search_forms`)."""
        q = t.quarantine
        needles = [f.encode() for f in forms if f]
        with self.ledger.engine.begin() as conn:
            rows = conn.execute(sa.select(q.c.id, q.c.content_enc).where(
                sa.or_(q.c.tenant == tenant, q.c.tenant.is_(None)))).all()
            drop = [int(r.id) for r in rows if any(
                n in base64.b64decode(self.ledger._cipher.decrypt(r.content_enc) or "")
                for n in needles)]
            if drop:
                conn.execute(q.delete().where(q.c.id.in_(drop)))
        return self._final(len(drop))

    def _final(self, dropped: int) -> int:
        """Entries dropped: made final in the database files too (callbridge.erasure)."""
        if dropped:
            scrub(self.ledger.engine)
        return dropped
