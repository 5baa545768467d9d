"""Dispatch bookkeeping: when a queued job is due, and when its message was published.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("run_after", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False)
    )
    op.add_column("jobs", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    # Jobs to publish: queued, no message yet, due. Small: it holds only such jobs.
    op.create_index(
        "ix_jobs_due",
        "jobs",
        ["run_after"],
        postgresql_where=sa.text("status = 'queued' AND enqueued_at IS NULL"),
    )
    # Jobs waiting on a message, by queue and age, for promotion of long waiters.
    op.create_index(
        "ix_jobs_waiting",
        "jobs",
        ["queue", "enqueued_at"],
        postgresql_where=sa.text("status = 'queued' AND enqueued_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_waiting", table_name="jobs")
    op.drop_index("ix_jobs_due", table_name="jobs")
    op.drop_column("jobs", "enqueued_at")
    op.drop_column("jobs", "run_after")
