"""Webhooks: the job's callback URL and event filter, and the durable table of deliveries.

A delivery row is written in the same transaction as the status change it reports, and the
delivery loop claims due rows with FOR UPDATE SKIP LOCKED; deliveries go with their job
(ON DELETE CASCADE), since each row holds a copy of the job's JSON.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIMESTAMP = sa.DateTime(timezone=True)
_EVENTS = "'job.queued', 'job.processing', 'job.retrying', 'job.completed', 'job.failed', 'job.cancelled'"
_STATES = "'pending', 'delivering', 'delivered', 'dead'"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("webhook_url", sa.String(2048), nullable=True))
    op.add_column(
        "jobs",
        sa.Column(
            "webhook_events",
            postgresql.ARRAY(sa.String(32)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("state", sa.String(16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("scheduled_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("created_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("delivered_at", _TIMESTAMP, nullable=True),
        sa.CheckConstraint(f"event_type IN ({_EVENTS})", name="event_type"),
        sa.CheckConstraint(f"state IN ({_STATES})", name="state"),
        sa.CheckConstraint("attempts >= 0", name="attempts"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_webhook_deliveries_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("event_id", name="uq_webhook_deliveries_event_id"),
    )
    # The delivery loop claims by this one: due rows, pending or with an expired delivering lease.
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("state IN ('pending', 'delivering')"),
    )
    op.create_index("ix_webhook_deliveries_job_created", "webhook_deliveries", ["job_id", "created_at", "id"])
    op.create_index(
        "ix_webhook_deliveries_state_created",
        "webhook_deliveries",
        ["state", sa.text("created_at DESC"), sa.text("id DESC")],
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_column("jobs", "webhook_events")
    op.drop_column("jobs", "webhook_url")
