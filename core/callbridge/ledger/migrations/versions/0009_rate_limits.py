"""Rate-limit windows shared by every worker on one database.

``rate_limit_keys``: one row per bucket instance (plugin, bucket, scope key),
locked while a request is counted. ``rate_limit_log``: each request's units,
from its start (``started``) until its answer (``done_at``), as Unix times.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_keys",
        sa.Column("bucket_key", sa.String(400), primary_key=True),
    )
    op.create_table(
        "rate_limit_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("bucket_key", sa.String(400), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("done_at", sa.Float),
        sa.Column("units", sa.Integer, nullable=False),
    )
    op.create_index("ix_rate_limit_log_key", "rate_limit_log", ["bucket_key", "started"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_log_key", table_name="rate_limit_log")
    op.drop_table("rate_limit_log")
    op.drop_table("rate_limit_keys")
