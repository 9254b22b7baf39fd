"""The ledger's hash key, and the markers written into apps.

Keyed hashes (of phone numbers, of event ids) and the markers written into apps
(so a retry finds its own record) use one *hash key*, kept apart from the
encryption key: it is made once, stored in the ledger encrypted, and never
rotates, so rotating the encryption key changes no hash and no marker.

A ledger made before the hash key existed keeps the key its hashes were made
with (the one derived from the encryption key), so every hash it holds stays
valid. Its deliveries begun before the upgrade keep their old, unkeyed ``cb1-``
marker (:attr:`callbridge.events.CallEvent.marker`); every later delivery gets a
keyed ``cb2-`` marker, which cannot be traced back to an event id that is a
phone number.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import sqlalchemy as sa

from callbridge.eventtext import event_marker
from callbridge.ledger import tables as t

__all__ = ["HashKey", "event_id_hash", "hash_event_ids", "keyed_marker", "load_hash_key",
           "marker_for", "mask_id", "read_hash_key"]

_KEY = "ledger:hash_key"
_SINCE = "ledger:hash_key_since"
_IDS_HASHED = "ledger:event_ids_hashed"


class _Cipher(Protocol):
    def encrypt(self, text: str | None) -> bytes | None: ...
    def decrypt(self, blob: bytes | None) -> str | None: ...
    def digest(self, *parts: str) -> str: ...


@dataclass(frozen=True)
class HashKey:
    """The ledger's hash key and when it was made (deliveries begun before then keep
    their ``cb1-`` markers)."""

    key: bytes
    since: datetime


def keyed_marker(key: bytes, tenant: str, source: str, kind: str, event_id: str) -> str:
    """The ``cb2-`` marker of an event's identity, keyed with the ledger's hash key."""
    mac = _keyed(key).copy()
    mac.update("\x1f".join(("marker", tenant, source, kind, event_id)).encode())
    return f"cb2-{mac.hexdigest()[:32]}"


@functools.lru_cache(maxsize=4)
def _keyed(key: bytes) -> hmac.HMAC:
    """An HMAC keyed with ``key``, copied for each marker (the key is set up once)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def marker_for(hash_key: HashKey, identity: tuple[str, str, str, str],
               first_attempt_at: datetime | None) -> str:
    """The marker a delivery writes into its app: ``cb1-`` for a delivery whose first
    attempt came before the hash key (its earlier attempts wrote that one), else ``cb2-``."""
    if first_attempt_at is not None and first_attempt_at < hash_key.since:
        return event_marker(*identity)
    return keyed_marker(hash_key.key, *identity)


def _kv(conn: sa.Connection, key: str) -> bytes | None:
    kv = t.kv
    value: bytes | None = conn.execute(sa.select(kv.c.value_enc).where(
        kv.c.tenant == "", kv.c.app == "", kv.c.key == key)).scalar()
    return value


def load_hash_key(conn: sa.Connection, cipher: _Cipher, legacy_key: bytes,
                  now: datetime | None = None) -> HashKey:
    """The ledger's hash key, made on first use.

    A ledger that already holds hashes (events or phone-index rows) keeps
    ``legacy_key``, the key they were made with; an empty one gets a new random key.
    Run inside the migration's transaction, so two processes make one key.
    """
    stored, since = _kv(conn, _KEY), _kv(conn, _SINCE)
    if stored is not None and since is not None:
        return HashKey(base64.b64decode(cipher.decrypt(stored) or ""),
                       datetime.fromisoformat(cipher.decrypt(since) or ""))
    if stored is not None or since is not None:  # half written: never, but do not guess
        raise RuntimeError("the ledger's hash key is incomplete")
    used = conn.execute(sa.select(t.events.c.id).limit(1)).first() is not None or \
        conn.execute(sa.select(t.phone_index.c.id).limit(1)).first() is not None
    if used:
        _check_key(conn, cipher)
    key = legacy_key if used else os.urandom(32)
    when = now or datetime.now(UTC)
    conn.execute(t.kv.insert(), [
        {"tenant": "", "app": "", "key": _KEY,
         "value_enc": cipher.encrypt(base64.b64encode(key).decode("ascii"))},
        {"tenant": "", "app": "", "key": _SINCE, "value_enc": cipher.encrypt(when.isoformat())}])
    return HashKey(key, when)


def _check_key(conn: sa.Connection, cipher: _Cipher) -> None:
    """Refuse to make the hash key of a ledger whose contents this key cannot read: it
    would be stored under the wrong key, and the ledger would mix two keys."""
    for column in (t.events.c.content_enc, t.kv.c.value_enc, t.tokens.c.token_enc):
        blob = conn.execute(sa.select(column).where(column.is_not(None)).limit(1)).scalar()
        if blob is not None:
            cipher.decrypt(blob)  # ConfigError naming the variable when the key is wrong
            return


def read_hash_key(engine: sa.Engine, cipher: _Cipher) -> HashKey | None:
    """The stored hash key, or None when there is none yet (or no schema yet)."""
    try:
        with engine.connect() as conn:
            stored, since = _kv(conn, _KEY), _kv(conn, _SINCE)
    except sa.exc.SQLAlchemyError:
        return None
    if stored is None or since is None:
        return None
    return HashKey(base64.b64decode(cipher.decrypt(stored) or ""),
                   datetime.fromisoformat(cipher.decrypt(since) or ""))


# --- event ids ---------------------------------------------------------------------------


def event_id_hash(cipher: _Cipher, tenant: str, source: str, kind: str, event_id: str) -> str:
    """The keyed hash the ledger keeps of an event id (``events.source_id``), for lookups.

    Phone systems do use numbers as ids; the id itself is kept only encrypted
    (``events.source_id_enc``) and shown masked (:func:`mask_id`).
    """
    return cipher.digest("event-id", tenant, source, kind, event_id)


def mask_id(event_id: str | None) -> str:
    """An event id for display: all but its last 4 characters hidden ("********0163");
    ``(erased)`` once the event's contents are erased."""
    if event_id is None:
        return "(erased)"
    return "*" * max(0, len(event_id) - 4) + event_id[-4:]


def hash_event_ids(conn: sa.Connection, cipher: _Cipher) -> int:
    """Once per ledger: every event id kept in plain (a ledger from before) becomes its
    keyed hash, with an encrypted copy. Runs in the migration's transaction, after the
    hash key is in use; a flag in the ledger says it is done. Returns the rows changed."""
    if _kv(conn, _IDS_HASHED) is not None:
        return 0
    e = t.events
    rows = conn.execute(sa.select(e.c.id, e.c.tenant, e.c.source, e.c.kind, e.c.source_id)
                        .where(e.c.source_id_enc.is_(None), e.c.purged_at.is_(None))).all()
    for row in rows:
        conn.execute(e.update().where(e.c.id == row.id).values(
            source_id=event_id_hash(cipher, row.tenant, row.source, row.kind, row.source_id),
            source_id_enc=cipher.encrypt(row.source_id)))
    erased = conn.execute(sa.select(e.c.id, e.c.tenant, e.c.source, e.c.kind, e.c.source_id)
                          .where(e.c.purged_at.is_not(None))).all()
    for row in erased:  # the id is hashed; no copy is kept of an erased event's id
        conn.execute(e.update().where(e.c.id == row.id).values(
            source_id=event_id_hash(cipher, row.tenant, row.source, row.kind, row.source_id),
            source_id_enc=None))
    conn.execute(t.kv.insert(), [{"tenant": "", "app": "", "key": _IDS_HASHED,
                                  "value_enc": cipher.encrypt("1")}])
    return len(rows) + len(erased)
