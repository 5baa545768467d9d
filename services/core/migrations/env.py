"""Alembic environment: runs on the connection that services.core.migrate hands over."""

from __future__ import annotations

from alembic import context

from services.core.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `python -m services.core.migrate`")
context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
