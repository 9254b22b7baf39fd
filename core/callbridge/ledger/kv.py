"""Key-value entries and the cache, per (tenant, app), encrypted."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from callbridge.ledger import tables as t
from callbridge.ledger._base import (
    LedgerCore,
)


class KvMixin(LedgerCore):
    """Key-value entries and cached values."""


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

    def _cache_key(self, tenant: str, app: str, key: str) -> dict[str, str]:
        # The key is stored as a keyed hash: a plugin may put a number in it.
        return {"tenant": tenant, "app": app, "key_hash": self._cipher.digest("cache", app, key)}

    def cache_get(self, tenant: str, app: str, key: str,
                  now: datetime | None = None) -> tuple[str, datetime] | None:
        """A cached value (JSON text) and when it expires; None if absent or expired."""
        c = t.cache
        ident = self._cache_key(tenant, app, key)
        with self._read() as conn:
            row = conn.execute(sa.select(c.c.value_enc, c.c.expires_at).where(
                *(c.c[k] == v for k, v in ident.items()))).first()
        if row is None or row.expires_at <= (now or self._now()):
            return None
        return self._cipher.decrypt(row.value_enc) or "", row.expires_at

    def cache_put(self, tenant: str, app: str, key: str, json_text: str, ttl_seconds: float,
                  now: datetime | None = None) -> datetime:
        """Cache a value (JSON text, encrypted) for ``ttl_seconds``; returns its expiry."""
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds: must be more than 0")
        expires = (now or self._now()) + timedelta(seconds=ttl_seconds)
        with self._write() as conn:
            self._upsert(conn, t.cache, self._cache_key(tenant, app, key),
                         {"value_enc": self._cipher.encrypt(json_text), "expires_at": expires})
        return expires

    def cache_delete(self, tenant: str, app: str, key: str) -> None:
        """Drop a cached value, if present."""
        c = t.cache
        with self._write() as conn:
            conn.execute(c.delete().where(
                *(c.c[k] == v for k, v in self._cache_key(tenant, app, key).items())))
