"""Alembic migrations of the videogen database."""
