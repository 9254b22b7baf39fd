"""The open deliveries, oldest first: a partial index for claims.

Holds only what a claim may take (pending, waiting, or logged but needing an
update), ordered as claims take them. With the database's statistics (after
``ANALYZE``, which rates the state columns unselective when most deliveries are
logged) the claim still reads only open deliveries instead of every row.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

#: The index's condition; a claim's query states the same (ledger.deliveries, ledger.hotsql).
SQLITE_WHERE = "status IN ('pending', 'waiting') OR needs_update IS 1"
POSTGRESQL_WHERE = "status IN ('pending', 'waiting') OR needs_update IS TRUE"


def upgrade() -> None:
    op.create_index("ix_deliveries_open", "deliveries", ["occurred_at", "id"],
                    sqlite_where=sa.text(SQLITE_WHERE), postgresql_where=sa.text(POSTGRESQL_WHERE))


def downgrade() -> None:
    op.drop_index("ix_deliveries_open", table_name="deliveries")
