"""Job versions for live events: event_seq, bumped by the database at every visible change.

The version is the event id that WatchJob and the SSE route send and that clients resume from
(Last-Event-ID). A trigger, not the application, bumps it, so that every writer (the service's
transitions, the dispatcher's reaper, an operator's UPDATE) versions the job alike; changes no
client sees (heartbeats, dispatch bookkeeping) leave it alone.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# The columns a client sees in a job; a change of any of them is an event.
_VISIBLE = (
    "status, prompt, metadata, result, retry_count, max_retries, used_provider, used_model, "
    "generation_time_ms, error_message, started_at, completed_at, progress_percent, progress_stage"
)
_OLD = ", ".join(f"OLD.{column.strip()}" for column in _VISIBLE.split(","))
_NEW = ", ".join(f"NEW.{column.strip()}" for column in _VISIBLE.split(","))

BUMP = f"""
CREATE FUNCTION jobs_bump_event_seq() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF ROW({_NEW}) IS DISTINCT FROM ROW({_OLD}) THEN
    NEW.event_seq := OLD.event_seq + 1;
  ELSE
    NEW.event_seq := OLD.event_seq;
  END IF;
  RETURN NEW;
END
$$
"""


def upgrade() -> None:
    op.add_column("jobs", sa.Column("event_seq", sa.BigInteger(), server_default="1", nullable=False))
    op.execute(BUMP)
    op.execute(
        "CREATE TRIGGER jobs_bump_event_seq BEFORE UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_bump_event_seq()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER jobs_bump_event_seq ON jobs")
    op.execute("DROP FUNCTION jobs_bump_event_seq()")
    op.drop_column("jobs", "event_seq")
