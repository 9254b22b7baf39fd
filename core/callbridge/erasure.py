"""Making an erasure final in the database files, not only in the rows.

SQLite keeps a deleted or overwritten value in free space (unless its
``secure_delete`` is on) and in the write-ahead log until a checkpoint; the
ledger turns ``secure_delete`` on for each connection and, after an erasure,
copies the WAL into the file and truncates it. PostgreSQL keeps dead row
versions until a vacuum; the tables holding contents are vacuumed after an
erasure (autovacuum would reclaim them later, at a time nobody chooses).
Backups are another matter: they keep erased contents until they expire
(docs/ledger.md).
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = ["CONTENT_TABLES", "scrub"]

#: The tables whose rows hold encrypted contents that an erasure removes.
CONTENT_TABLES = ("events", "event_revisions", "deliveries", "phone_index", "kv", "tokens", "cache",
                  "quarantine")


def scrub(engine: sa.Engine) -> None:
    """Make the last erasure final in the files: see the module docstring."""
    backend = engine.url.get_backend_name()
    if backend == "sqlite":
        # Outside any transaction: the DBAPI connection, not SQLAlchemy's (which begins one).
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.fetchall()
            cursor.close()
        finally:
            raw.close()
    elif backend == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            present = set(sa.inspect(conn).get_table_names())
            tables = ", ".join(t for t in CONTENT_TABLES if t in present)
            if tables:
                conn.exec_driver_sql(f"VACUUM {tables}")
