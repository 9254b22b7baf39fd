"""A connection's open deliveries, oldest first: a partial index for its claims
(PostgreSQL).

A worker claims one connection's deliveries at a time (tenant and app given). With
only ``ix_deliveries_open`` the claim read every open delivery of every connection
to find the few of its own, so with a backlog each claim cost as much as the
backlog. This index holds the same rows per (tenant, app), in the order claims take
them. SQLite keeps its claims as they were (one writer at a time, and its claims
are made by the process's own scheduler): the index is not made there.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

#: The index's condition (ix_deliveries_open's); a claim's query states the same
#: (ledger.pgdirect).
POSTGRESQL_WHERE = "status IN ('pending', 'waiting') OR needs_update IS TRUE"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_deliveries_open_connection", "deliveries",
                        ["tenant", "app", "occurred_at", "id"],
                        postgresql_where=sa.text(POSTGRESQL_WHERE))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_deliveries_open_connection", table_name="deliveries")
