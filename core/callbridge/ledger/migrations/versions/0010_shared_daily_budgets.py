"""Daily budgets shared by every worker: the units spent today per bucket instance.

``rate_limit_keys.daily_used``: the units counted since the last reset;
``daily_resets_at``: the next reset (Unix time), when the count starts again.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rate_limit_keys") as batch:
        batch.add_column(sa.Column("daily_used", sa.Integer))
        batch.add_column(sa.Column("daily_resets_at", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("rate_limit_keys") as batch:
        batch.drop_column("daily_resets_at")
        batch.drop_column("daily_used")
