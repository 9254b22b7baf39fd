"""Indexes for history and claims.

History (newest first) reads ``ix_deliveries_updated`` backwards, or
``ix_deliveries_tenant_updated`` for one tenant, and stops at its limit instead of
sorting every delivery. A claim finds updates of logged events through
``ix_deliveries_needs_update`` instead of reading every logged delivery.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_updated", "deliveries", ["updated_at", "id"])
    op.create_index("ix_deliveries_tenant_updated", "deliveries", ["tenant", "updated_at", "id"])
    op.create_index("ix_deliveries_needs_update", "deliveries", ["needs_update", "status"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_needs_update", table_name="deliveries")
    op.drop_index("ix_deliveries_tenant_updated", table_name="deliveries")
    op.drop_index("ix_deliveries_updated", table_name="deliveries")
