"""The write protocol: the steps an attempt began writing (an uncertain write if no
record of it follows).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import callbridge.ledger.tables
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "steps",
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("step", sa.String(length=50), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("begun_at", callbridge.ledger.tables.UTCDateTime(timezone=True),
                  nullable=False),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("delivery_id", "kind", "step"),
    )


def downgrade() -> None:
    op.drop_table("steps")
