"""Quotas: the video-seconds of today's jobs that were deleted, so that deleting gives none back.

The daily video-seconds quota sums the jobs a user created today (UTC) from the jobs table. A
job deleted today (DELETE of a finished job, media retention, an operator) would drop out of
that sum; a trigger adds its seconds to quota_deleted_usage instead, whoever deletes it. Only
deletions write here, so creating a job costs no extra write. Rows of past days are useless and
each user's are removed when the next of their jobs is deleted.

The charge of a job is the same as in services/jobs/repository.py user_usage: its
metadata.durationSeconds when that is a positive number, else 4 (quotas.DEFAULT_VIDEO_SECONDS);
a later change of that default needs a migration that replaces this function.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

KEEP = """
CREATE FUNCTION jobs_keep_quota_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  today date := (now() AT TIME ZONE 'UTC')::date;
  seconds numeric := 4;
BEGIN
  IF (OLD.created_at AT TIME ZONE 'UTC')::date = today THEN
    -- Nested, not AND: the cast must never see a string.
    IF jsonb_typeof(OLD.metadata -> 'durationSeconds') = 'number' THEN
      IF (OLD.metadata -> 'durationSeconds')::numeric > 0 THEN
        seconds := (OLD.metadata -> 'durationSeconds')::numeric;
      END IF;
    END IF;
    DELETE FROM quota_deleted_usage WHERE user_id = OLD.user_id AND day < today;
    INSERT INTO quota_deleted_usage AS kept (user_id, day, video_seconds)
    VALUES (OLD.user_id, today, seconds)
    ON CONFLICT (user_id, day) DO UPDATE SET video_seconds = kept.video_seconds + EXCLUDED.video_seconds;
  END IF;
  RETURN OLD;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "quota_deleted_usage",
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("video_seconds", sa.Numeric(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", name="pk_quota_deleted_usage"),
    )
    op.execute(KEEP)
    op.execute(
        "CREATE TRIGGER jobs_keep_quota_usage AFTER DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_keep_quota_usage()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_keep_quota_usage ON jobs")
    op.execute("DROP FUNCTION jobs_keep_quota_usage()")
    op.drop_table("quota_deleted_usage")
