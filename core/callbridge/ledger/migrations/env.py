"""Alembic environment: runs on the connection the ledger hands over."""

from __future__ import annotations

from alembic import context
from callbridge.ledger.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the ledger always passes one
    raise RuntimeError("run migrations through callbridge.ledger.Ledger.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
