"""Jobs, provider health and metrics tables, with the job state machine in a trigger.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TIMESTAMP = sa.DateTime(timezone=True)

# The legal moves of a job; any other change of status is refused by the database itself,
# whatever code issues the UPDATE.
_GUARD = """
CREATE FUNCTION jobs_guard_transition() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status <> OLD.status AND NOT (
       (OLD.status = 'queued' AND NEW.status IN ('processing', 'cancelled'))
    OR (OLD.status = 'processing' AND NEW.status IN ('completed', 'failed', 'cancelled', 'queued'))
  ) THEN
    RAISE EXCEPTION 'illegal job transition % -> %', OLD.status, NEW.status
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END
$$
"""
_GUARD_TRIGGER = """
CREATE TRIGGER jobs_guard_transition BEFORE UPDATE OF status ON jobs
  FOR EACH ROW EXECUTE FUNCTION jobs_guard_transition()
"""


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), server_default="queued", nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("result", postgresql.JSONB(), nullable=True),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="3", nullable=False),
        sa.Column("used_provider", sa.String(64), nullable=True),
        sa.Column("used_model", sa.String(128), nullable=True),
        sa.Column("generation_time_ms", sa.BigInteger(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("queue", sa.String(32), server_default="default", nullable=False),
        sa.Column("progress_percent", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column("progress_stage", sa.String(64), server_default="", nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("created_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("started_at", _TIMESTAMP, nullable=True),
        sa.Column("completed_at", _TIMESTAMP, nullable=True),
        sa.CheckConstraint("status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')", name="status"),
        sa.CheckConstraint("max_retries BETWEEN 0 AND 10", name="max_retries"),
        sa.CheckConstraint("retry_count BETWEEN 0 AND max_retries", name="retry_count"),
        sa.CheckConstraint("progress_percent BETWEEN 0 AND 100", name="progress_percent"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_created", "jobs", [sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index("ix_jobs_user_created", "jobs", ["user_id", sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index("ix_jobs_status_created", "jobs", ["status", sa.text("created_at DESC"), sa.text("id DESC")])
    op.create_index(
        "ix_jobs_user_status_created",
        "jobs",
        ["user_id", "status", sa.text("created_at DESC"), sa.text("id DESC")],
    )
    op.execute(_GUARD)
    op.execute(_GUARD_TRIGGER)

    op.create_table(
        "provider_health",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), server_default="healthy", nullable=False),
        sa.Column("last_checked_at", _TIMESTAMP, nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("avg_response_time_ms", sa.Double(), server_default="0", nullable=False),
        sa.Column("cost_per_request", sa.Double(), server_default="0", nullable=False),
        sa.Column("created_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('healthy', 'degraded', 'unhealthy')", name="status"),
        sa.PrimaryKeyConstraint("id", name="pk_provider_health"),
        sa.UniqueConstraint("provider", name="uq_provider_health_provider"),
    )

    op.create_table(
        "metrics",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("component", sa.String(32), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.Column("tags", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("created_at", _TIMESTAMP, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("component IN ('api', 'worker', 'database', 'provider')", name="component"),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_metrics_job_id_jobs", ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
    )
    op.create_index(
        "ix_metrics_component_metric_created", "metrics", ["component", "metric", sa.text("created_at DESC")]
    )
    op.create_index("ix_metrics_job_id", "metrics", ["job_id"])


def downgrade() -> None:
    op.drop_table("metrics")
    op.drop_table("provider_health")
    op.execute("DROP TRIGGER jobs_guard_transition ON jobs")
    op.execute("DROP FUNCTION jobs_guard_transition()")
    op.drop_table("jobs")
