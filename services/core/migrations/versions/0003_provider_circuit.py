"""Provider circuit breaker and last error.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("provider_health", sa.Column("circuit_open_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("provider_health", sa.Column("last_error", sa.Text(), server_default="", nullable=False))


def downgrade() -> None:
    op.drop_column("provider_health", "last_error")
    op.drop_column("provider_health", "circuit_open_until")
