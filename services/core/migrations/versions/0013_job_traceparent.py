"""jobs.traceparent: the W3C trace context of the request that created the job.

The create request's trace went on in the worker only when the jobs service published the
message itself, inside the request. A retry's message, one the dispatcher published after a
broker outage, and a lost message published again came from a loop outside any request, so each
started a trace of its own. The dispatcher now continues the job's stored context. Set only while
tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT); NULL otherwise.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "traceparent")
