"""Delivery states of SPEC §2.6: a deadline per delivery; retryable failures wait.

A failed delivery that was to be retried becomes ``waiting`` (``rate_limit`` when
the app's rate limit stopped it, else ``backoff``); its last error stays in
``message``. Every delivery gets a deadline 72 hours (the default of the ledger's
``deadline_hours``) after its event, or after it arrived if that is later.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import timedelta

import callbridge.ledger.tables
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_DEADLINE = timedelta(hours=72)


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            "deadline_at", callbridge.ledger.tables.UTCDateTime(timezone=True), nullable=True))
    d = sa.table("deliveries", sa.column("id", sa.Integer),
                 sa.column("event_id", sa.Integer),
                 sa.column("status", sa.String), sa.column("reason", sa.String),
                 sa.column("message", sa.Text), sa.column("retryable", sa.Boolean),
                 sa.column("deadline_at", callbridge.ledger.tables.UTCDateTime()))
    e = sa.table("events", sa.column("id", sa.Integer),
                 sa.column("occurred_at", callbridge.ledger.tables.UTCDateTime()),
                 sa.column("received_at", callbridge.ledger.tables.UTCDateTime()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(d.c.id, e.c.occurred_at, e.c.received_at)
                        .join(e, e.c.id == d.c.event_id)).all()
    if rows:
        conn.execute(d.update().where(d.c.id == sa.bindparam("did")).values(
            deadline_at=sa.bindparam("deadline")),
            [{"did": r.id, "deadline": max(r.occurred_at, r.received_at) + _DEADLINE}
             for r in rows])
    retry = sa.and_(d.c.status == "failed", d.c.retryable.is_(True))
    conn.execute(d.update().where(retry).values(
        status="waiting", message=sa.func.coalesce(d.c.message, d.c.reason),
        reason=sa.case((d.c.reason == "rate_limited", "rate_limit"), else_="backoff")))


def downgrade() -> None:
    d = sa.table("deliveries", sa.column("status", sa.String), sa.column("reason", sa.String),
                 sa.column("retryable", sa.Boolean))
    op.get_bind().execute(d.update().where(d.c.status.in_(["waiting", "parked", "dead"])).values(
        status="failed", retryable=d.c.status != "dead"))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("deadline_at")
