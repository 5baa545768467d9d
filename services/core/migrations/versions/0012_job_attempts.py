"""job_attempts: every attempt of a job that ended, and how, kept by a trigger on jobs.

A job's row holds only its current attempt: a retry overwrites the error and the worker, so the
history of a job that took three attempts was lost. A row trigger records an attempt when its
job leaves `processing`, whatever wrote the change (a worker's CompleteJob, FailJob or RetryJob,
the hot path's hand-written UPDATE, the reaper, a cancel), in the change's own transaction: no
ended attempt goes unrecorded and none is recorded for a change that rolled back. The trigger's
WHEN clause keeps it off every other UPDATE (progress, heartbeats, publishing).

The outcome is the job's new status (`completed`, `failed`, `cancelled`), or `retried` when the
job went back to `queued` for another attempt. The history starts with this migration: jobs
that ended before it have no rows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_RECORD = """
CREATE FUNCTION job_attempts_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO job_attempts (job_id, attempt, outcome, worker_id, provider, error, started_at)
  VALUES (
    NEW.id,
    OLD.retry_count + 1,
    CASE WHEN NEW.status = 'queued' THEN 'retried' ELSE NEW.status END,
    OLD.worker_id,
    left(CASE
      WHEN NEW.status IN ('completed', 'failed') AND NEW.used_provider IS NOT NULL THEN NEW.used_provider
      -- the remote task this attempt started, if any (provider_task names its attempt, 0-based)
      WHEN OLD.provider_task ->> 'attempt' = OLD.retry_count::text THEN OLD.provider_task ->> 'provider'
    END, 64),  -- never longer than the column: a record must not fail the change it records
    CASE WHEN NEW.status IN ('failed', 'queued') THEN NEW.error_message END,
    OLD.started_at
  );
  RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "job_attempts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("provider", sa.String(64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_attempts_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_job_attempts"),
        sa.CheckConstraint("outcome IN ('completed', 'failed', 'cancelled', 'retried')", name="outcome"),
    )
    op.create_index("ix_job_attempts_job_id_id", "job_attempts", ["job_id", "id"])
    op.execute(_RECORD)
    op.execute(
        "CREATE TRIGGER job_attempts_record AFTER UPDATE OF status ON jobs FOR EACH ROW "
        "WHEN (OLD.status = 'processing' AND NEW.status <> 'processing') EXECUTE FUNCTION job_attempts_record()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER job_attempts_record ON jobs")
    op.execute("DROP FUNCTION job_attempts_record()")
    op.drop_index("ix_job_attempts_job_id_id", table_name="job_attempts")
    op.drop_table("job_attempts")
