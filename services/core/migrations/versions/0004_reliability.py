"""Idempotency keys, attempt heartbeats and the indexes of the reaper and the orphan sweep.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("idempotency_key", sa.String(255), nullable=True))
    op.add_column("jobs", sa.Column("request_fingerprint", sa.String(64), nullable=True))
    op.add_column("jobs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    # Jobs running now count as alive from here on; the reaper takes them back if they stay silent.
    op.execute("UPDATE jobs SET heartbeat_at = now() WHERE status = 'processing'")
    op.create_index(
        "ix_jobs_user_idempotency",
        "jobs",
        ["user_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index("ix_jobs_heartbeat", "jobs", ["heartbeat_at"], postgresql_where=sa.text("status = 'processing'"))


def downgrade() -> None:
    op.drop_index("ix_jobs_heartbeat", table_name="jobs")
    op.drop_index("ix_jobs_user_idempotency", table_name="jobs")
    op.drop_column("jobs", "heartbeat_at")
    op.drop_column("jobs", "request_fingerprint")
    op.drop_column("jobs", "idempotency_key")
