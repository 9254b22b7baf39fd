"""Rotating the ledger's encryption key: every content re-encrypted under a new key.

``callbridge rotate-key`` reads the current key from ``CALLBRIDGE_SECRET_KEY`` and
the new one from ``CALLBRIDGE_NEW_SECRET_KEY``, and re-encrypts every encrypted
column (``*_enc``) of every table, a batch per transaction. A value already under
the new key is left as it is, so a rotation stopped half-way (a crash, a kill) is
finished by running the command again. The hash key is one of those values: it is
re-encrypted, never changed, so no keyed hash and no marker changes. Once the
command reports that it is done, set ``CALLBRIDGE_SECRET_KEY`` to the new key.

Stop every other callbridge process first: they still hold the old key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from callbridge.errors import ConfigError
from callbridge.ledger import tables as t

__all__ = ["NEW_KEY_ENV", "Rotation", "rotate_key"]

NEW_KEY_ENV = "CALLBRIDGE_NEW_SECRET_KEY"
OLD_KEY_ENV = "CALLBRIDGE_SECRET_KEY"
BATCH = 500


@dataclass(frozen=True)
class Rotation:
    """What a run of :func:`rotate_key` did."""

    rewritten: int
    already_new: int


def _fernet(key: str | None, variable: str) -> Fernet:
    if not key:
        raise ConfigError(f"{variable} is not set (make a key with `callbridge keygen`)")
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        raise ConfigError(f"{variable} is not a valid key; make one with `callbridge keygen`") from None


def rotate_key(engine: sa.Engine, *, old_key: str | None = None, new_key: str | None = None,
               progress: Callable[[str, int], None] | None = None) -> Rotation:
    """Re-encrypt every ``*_enc`` value of the ledger under ``new_key``; resumable."""
    old = _fernet(old_key or os.environ.get(OLD_KEY_ENV), OLD_KEY_ENV)
    new = _fernet(new_key or os.environ.get(NEW_KEY_ENV), NEW_KEY_ENV)
    both = MultiFernet([new, old])
    rewritten = already = 0
    for table in t.metadata.sorted_tables:
        columns = [c for c in table.c if c.name.endswith("_enc")]
        if not columns:
            continue
        keys = list(table.primary_key.columns)
        with engine.connect() as conn:
            pks = [tuple(r) for r in conn.execute(sa.select(*keys).order_by(*keys))]
        for start in range(0, len(pks), BATCH):
            batch = pks[start:start + BATCH]
            done, same = _rotate_batch(engine, table, keys, columns, batch, new, both)
            rewritten += done
            already += same
            if progress is not None:
                progress(table.name, min(start + BATCH, len(pks)))
    return Rotation(rewritten=rewritten, already_new=already)


def _rotate_batch(engine: sa.Engine, table: sa.Table, keys: list[sa.Column[object]],
                  columns: list[sa.Column[object]], batch: list[tuple[object, ...]],
                  new: Fernet, both: MultiFernet) -> tuple[int, int]:
    done = same = 0
    with engine.begin() as conn:
        where = sa.tuple_(*keys).in_(batch) if len(keys) > 1 else keys[0].in_([b[0] for b in batch])
        for row in conn.execute(sa.select(*keys, *columns).where(where)).all():
            values: dict[str, bytes] = {}
            for column in columns:
                token = row._mapping[column]
                if token is None:
                    continue
                try:
                    new.decrypt(token)
                    same += 1
                    continue
                except InvalidToken:
                    pass
                try:
                    values[column.name] = both.rotate(token)
                except InvalidToken:
                    raise ConfigError(
                        f"a value in {table.name}.{column.name} opens with neither "
                        f"{OLD_KEY_ENV} nor {NEW_KEY_ENV}") from None
            if values:
                conn.execute(table.update().where(
                    *[k == row._mapping[k] for k in keys]).values(**values))
                done += len(values)
    return done, same
