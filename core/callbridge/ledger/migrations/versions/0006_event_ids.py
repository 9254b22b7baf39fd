"""The source's event id kept as a keyed hash, with an encrypted copy for display.

The column is added here; the ids are hashed in Python by the ledger right after
(callbridge.markers.hash_event_ids), since the hash needs the ledger's key.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_id_enc", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("source_id_enc")
