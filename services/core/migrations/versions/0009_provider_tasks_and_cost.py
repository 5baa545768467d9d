"""A job's cost and its provider task.

- `cost_usd`: what its video cost, as routing estimated it (price per second times seconds, or
  the price per request); set when it completes.
- `provider_task`: `{"provider", "taskId", "attempt"}` of the remote task the current attempt
  started (Runway's task, fal's request, ...), so that the next attempt can cancel it when the
  worker that started it died.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("cost_usd", sa.Numeric(14, 6), nullable=True))
    op.add_column("jobs", sa.Column("provider_task", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "provider_task")
    op.drop_column("jobs", "cost_usd")
