"""Migrations and models describe the same schema, and migrating is safe to repeat."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.core import migrate
from services.core.db import async_url
from services.core.models import Base
from tests.support import databases

HEAD = "0003"


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(_diff)
    finally:
        await engine.dispose()

    assert diff == []


async def test_concurrent_upgrades_of_a_fresh_database_all_succeed() -> None:
    url = await databases.create_database(databases.server_url())
    try:
        await asyncio.gather(*(migrate.upgrade(url) for _ in range(4)))

        assert await migrate.current(url) == HEAD
    finally:
        await databases.drop_database(url)


async def test_downgrade_to_base_and_upgrade_again() -> None:
    url = await databases.create_database(databases.server_url())
    try:
        await migrate.upgrade(url)
        await migrate.downgrade(url, "base")
        assert await migrate.current(url) is None

        await migrate.upgrade(url)
        assert await migrate.current(url) == HEAD
    finally:
        await databases.drop_database(url)
