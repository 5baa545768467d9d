"""jobs.result in snake_case, as services/core/job/result.py's VideoResult writes and reads it.

The REST and webhook JSON stay camelCase: that casing lives only where that JSON is written.
The trigger that bumps a job's version is held off meanwhile: the video did not change.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (stored before, stored now)
FIELDS = (
    ("videoUrl", "video_url"),
    ("contentType", "content_type"),
    ("durationSeconds", "duration_seconds"),
    ("width", "width"),
    ("height", "height"),
    ("fps", "fps"),
    ("sizeBytes", "size_bytes"),
    ("storageKey", "storage_key"),
    ("codec", "codec"),
)


def _rename(pairs: tuple[tuple[str, str], ...], marker: str) -> None:
    built = ", ".join(f"'{new}', result->'{old}'" for old, new in pairs)
    op.execute("ALTER TABLE jobs DISABLE TRIGGER jobs_bump_event_seq")
    op.execute(
        f"UPDATE jobs SET result = jsonb_strip_nulls(jsonb_build_object({built})) "
        f"WHERE result IS NOT NULL AND result ? '{marker}'"
    )
    op.execute("ALTER TABLE jobs ENABLE TRIGGER jobs_bump_event_seq")


def upgrade() -> None:
    _rename(FIELDS, "videoUrl")


def downgrade() -> None:
    _rename(tuple((new, old) for old, new in FIELDS), "video_url")
