"""The cache (encrypted JSON values with an expiry, per tenant and app, keys hashed);
locks keyed by the keyed hash of their name, with a fence that only rises.

Locks are short-lived: the rows of the old table (held locks, if any, of a
process that is not running this version) are dropped.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import callbridge.ledger.tables
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("locks")
    op.create_table(
        "locks",
        sa.Column("name_hash", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("expires_at", callbridge.ledger.tables.UTCDateTime(timezone=True),
                  nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name_hash"),
    )
    op.create_table(
        "cache",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("app", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("value_enc", sa.LargeBinary(), nullable=False),
        sa.Column("expires_at", callbridge.ledger.tables.UTCDateTime(timezone=True),
                  nullable=False),
        sa.PrimaryKeyConstraint("tenant", "app", "key_hash"),
    )


def downgrade() -> None:
    op.drop_table("cache")
    op.drop_table("locks")
    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("expires_at", callbridge.ledger.tables.UTCDateTime(timezone=True),
                  nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
