"""The ledger's tables (SQLAlchemy Core). The migrations in ``migrations/`` create
them; a test checks the two agree.

Columns named ``*_enc`` hold Fernet ciphertext; ``*_hash`` hold keyed HMAC-SHA256
digests. Everything else is plain: identities, times, statuses, record ids.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


metadata = MetaData()

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("source", String(100), nullable=False),
    Column("kind", String(10), nullable=False),
    # The source's event id as a keyed hash (an id may be a phone number), and
    # encrypted for display (shown masked); callbridge.markers.hash_event_ids.
    Column("source_id", String(200), nullable=False),
    Column("source_id_enc", LargeBinary),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("party_hash", String(64)),
    Column("content_enc", LargeBinary),
    Column("purged_at", UTCDateTime),
    UniqueConstraint("tenant", "source", "kind", "source_id", name="uq_events_identity"),
    Index("ix_events_tenant_occurred", "tenant", "occurred_at"),
    Index("ix_events_party", "tenant", "party_hash"),
)

event_revisions = Table(
    "event_revisions", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", Integer, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("content_enc", LargeBinary),
    UniqueConstraint("event_id", "revision", name="uq_event_revisions"),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", Integer, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column("tenant", String(100), nullable=False),
    Column("app", String(100), nullable=False),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("mode", String(20), nullable=False, default="auto"),
    Column("status", String(20), nullable=False, default="pending"),
    Column("reason", String(100)),
    Column("message", Text),
    Column("retryable", Boolean, nullable=False, default=False),
    Column("next_attempt_at", UTCDateTime),
    Column("not_before", UTCDateTime),
    Column("needs_update", Boolean, nullable=False, default=False),
    Column("notes_enc", LargeBinary),
    Column("chosen_contact_ids", Text),
    Column("candidates_enc", LargeBinary),
    Column("lease_owner", String(200)),
    Column("lease_expires", UTCDateTime),
    Column("fence", Integer, nullable=False, default=0),
    Column("attempt", Integer, nullable=False, default=0),
    Column("first_attempt_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    # When transient failures stop being retried (the delivery becomes dead).
    Column("deadline_at", UTCDateTime),
    UniqueConstraint("tenant", "app", "event_id", name="uq_deliveries_one_per_app"),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
    Index("ix_deliveries_event", "event_id"),
    # History, newest first (all tenants, or one), and the claims' updates of logged events.
    Index("ix_deliveries_updated", "updated_at", "id"),
    Index("ix_deliveries_tenant_updated", "tenant", "updated_at", "id"),
    Index("ix_deliveries_needs_update", "needs_update", "status"),
    # What a claim may take, oldest first (partial: pending, waiting, or needing an update).
    Index("ix_deliveries_open", "occurred_at", "id",
          sqlite_where=text("status IN ('pending', 'waiting') OR needs_update IS 1"),
          postgresql_where=text("status IN ('pending', 'waiting') OR needs_update IS TRUE")),
    # The same per connection, for a worker's claims of one (tenant, app); PostgreSQL
    # only (migration 0011; ``info["dialects"]``: made on these alone).
    Index("ix_deliveries_open_connection", "tenant", "app", "occurred_at", "id",
          postgresql_where=text("status IN ('pending', 'waiting') OR needs_update IS TRUE"),
          info={"dialects": ("postgresql",)}),
)

records = Table(
    "records", metadata,
    Column("id", Integer, primary_key=True),
    Column("delivery_id", Integer, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(50), nullable=False),
    Column("app_id", String(200), nullable=False),
    Column("step", String(50), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("delivery_id", "kind", "step", name="uq_records_step"),
)

steps = Table(
    "steps", metadata,
    Column("delivery_id", Integer, ForeignKey("deliveries.id", ondelete="CASCADE"),
           primary_key=True),
    Column("kind", String(50), primary_key=True),
    Column("step", String(50), primary_key=True),
    Column("fence", Integer, nullable=False),
    Column("begun_at", UTCDateTime, nullable=False),
)

attempts = Table(
    "attempts", metadata,
    Column("id", Integer, primary_key=True),
    Column("delivery_id", Integer, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("fence", Integer, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", String(100)),
    Column("message", Text),
    Column("retryable", Boolean, nullable=False, default=False),
    Column("next_attempt_at", UTCDateTime),
    Index("ix_attempts_delivery", "delivery_id"),
)

kv = Table(
    "kv", metadata,
    Column("tenant", String(100), primary_key=True),
    Column("app", String(100), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("value_enc", LargeBinary, nullable=False),
)

phone_index = Table(
    "phone_index", metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(100), nullable=False),
    Column("app", String(100), nullable=False),
    Column("number_hash", String(64), nullable=False),
    Column("contact_id", String(200), nullable=False),
    Column("updated_at", UTCDateTime),
    Column("name_enc", LargeBinary),
    Column("checked_at", UTCDateTime),
    UniqueConstraint("tenant", "app", "number_hash", "contact_id", name="uq_phone_index"),
    Index("ix_phone_index_contact", "tenant", "app", "contact_id"),
)

index_state = Table(
    "index_state", metadata,
    Column("tenant", String(100), primary_key=True),
    Column("app", String(100), primary_key=True),
    Column("high_water", UTCDateTime),
    Column("synced_at", UTCDateTime),
)

tokens = Table(
    "tokens", metadata,
    Column("tenant", String(100), primary_key=True),
    Column("app", String(100), primary_key=True),
    Column("token_enc", LargeBinary, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

locks = Table(
    "locks", metadata,
    Column("name_hash", String(64), primary_key=True),
    Column("owner", String(200), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("fence", Integer, nullable=False),
)

cache = Table(
    "cache", metadata,
    Column("tenant", String(100), primary_key=True),
    Column("app", String(100), primary_key=True),
    Column("key_hash", String(64), primary_key=True),
    Column("value_enc", LargeBinary, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# Lines and bodies refused at the edge (callbridge.quarantine): the bytes encrypted and
# cut to a size cap, the reason (field names and problems, never values) in plain.
quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True),
    Column("tenant", String(100)),
    Column("origin", String(20), nullable=False),
    Column("line", Integer),
    Column("received_at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("size", Integer, nullable=False),
    Column("kept", Integer, nullable=False),
    Column("content_enc", LargeBinary, nullable=False),
    Index("ix_quarantine_tenant_received", "tenant", "received_at"),
)

# Rate-limit windows shared by every worker (callbridge.sharedlimits): one row per bucket
# instance, locked while a request is counted, and each request's units as a log entry.
rate_limit_keys = Table(
    "rate_limit_keys", metadata,
    Column("bucket_key", String(400), primary_key=True),
    Column("daily_used", Integer),  # units counted since the last daily reset
    Column("daily_resets_at", Float),  # the next reset, Unix time
)

rate_limit_log = Table(
    "rate_limit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("bucket_key", String(400), nullable=False),
    Column("started", Float, nullable=False),
    Column("done_at", Float),
    Column("units", Integer, nullable=False),
    Index("ix_rate_limit_log_key", "bucket_key", "started"),
)
