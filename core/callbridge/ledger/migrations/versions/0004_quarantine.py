"""The quarantine: input refused at the edge, kept encrypted for a while.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import callbridge.ledger.tables
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=True),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("received_at", callbridge.ledger.tables.UTCDateTime(timezone=True),
                  nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("kept", sa.Integer(), nullable=False),
        sa.Column("content_enc", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_tenant_received", ["tenant", "received_at"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index("ix_quarantine_tenant_received")
    op.drop_table("quarantine")
