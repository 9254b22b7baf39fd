"""The ledger's first schema: events, deliveries, records, attempts, index, tokens, locks.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 12:15:29.665335
"""

from __future__ import annotations

import callbridge.ledger.tables
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("source_id", sa.String(length=200), nullable=False),
        sa.Column(
            "occurred_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "received_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("party_hash", sa.String(length=64), nullable=True),
        sa.Column("content_enc", sa.LargeBinary(), nullable=True),
        sa.Column("purged_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "source", "kind", "source_id", name="uq_events_identity"),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_party", ["tenant", "party_hash"], unique=False)
        batch_op.create_index("ix_events_tenant_occurred", ["tenant", "occurred_at"], unique=False)

    op.create_table(
        "index_state",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("app", sa.String(length=100), nullable=False),
        sa.Column("high_water", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("synced_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "app"),
    )
    op.create_table(
        "kv",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("app", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value_enc", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "app", "key"),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column(
            "expires_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "phone_index",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("app", sa.String(length=100), nullable=False),
        sa.Column("number_hash", sa.String(length=64), nullable=False),
        sa.Column("contact_id", sa.String(length=200), nullable=False),
        sa.Column("updated_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("name_enc", sa.LargeBinary(), nullable=True),
        sa.Column("checked_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "app", "number_hash", "contact_id", name="uq_phone_index"),
    )
    with op.batch_alter_table("phone_index", schema=None) as batch_op:
        batch_op.create_index(
            "ix_phone_index_contact", ["tenant", "app", "contact_id"], unique=False
        )

    op.create_table(
        "tokens",
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("app", sa.String(length=100), nullable=False),
        sa.Column("token_enc", sa.LargeBinary(), nullable=False),
        sa.Column(
            "updated_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("tenant", "app"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=100), nullable=False),
        sa.Column("app", sa.String(length=100), nullable=False),
        sa.Column(
            "occurred_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column(
            "next_attempt_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("not_before", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("needs_update", sa.Boolean(), nullable=False),
        sa.Column("notes_enc", sa.LargeBinary(), nullable=True),
        sa.Column("chosen_contact_ids", sa.Text(), nullable=True),
        sa.Column("candidates_enc", sa.LargeBinary(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column(
            "lease_expires", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column(
            "first_attempt_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column(
            "updated_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "app", "event_id", name="uq_deliveries_one_per_app"),
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_deliveries_event", ["event_id"], unique=False)

    op.create_table(
        "event_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "received_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("content_enc", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "revision", name="uq_event_revisions"),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("started_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "finished_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column(
            "next_attempt_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True
        ),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.create_index("ix_attempts_delivery", ["delivery_id"], unique=False)

    op.create_table(
        "records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("app_id", sa.String(length=200), nullable=False),
        sa.Column("step", sa.String(length=50), nullable=False),
        sa.Column(
            "created_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(["delivery_id"], ["deliveries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("delivery_id", "kind", "step", name="uq_records_step"),
    )


def downgrade() -> None:
    op.drop_table("records")
    with op.batch_alter_table("attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_attempts_delivery")

    op.drop_table("attempts")
    op.drop_table("event_revisions")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_event")
        batch_op.drop_index("ix_deliveries_due")

    op.drop_table("deliveries")
    op.drop_table("tokens")
    with op.batch_alter_table("phone_index", schema=None) as batch_op:
        batch_op.drop_index("ix_phone_index_contact")

    op.drop_table("phone_index")
    op.drop_table("locks")
    op.drop_table("kv")
    op.drop_table("index_state")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_tenant_occurred")
        batch_op.drop_index("ix_events_party")

    op.drop_table("events")
