"""Migrations and models describe the same schema, and migrating is safe to repeat."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core import migrate
from services.core.db import async_url
from services.core.models import Base
from tests.support import databases

HEAD = "0013"


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


async def test_schema_gate_waits_for_the_migration_and_accepts_a_newer_schema() -> None:
    url = await databases.create_database(databases.server_url())
    engine = create_async_engine(async_url(url))
    gate = migrate.SchemaGate(engine, timeout=5)
    try:
        assert await gate() is False, "an empty database is not ready"

        await migrate.upgrade(url, "0002")
        assert await gate() is False, "a schema behind this code is not ready"

        await migrate.upgrade(url)
        assert await gate() is True

        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'from_a_newer_release'"))
        assert await gate() is True, "a newer schema (a rollout migrated first) keeps old pods ready"
    finally:
        await engine.dispose()
        await databases.drop_database(url)


async def test_schema_gate_is_false_while_the_database_is_unreachable() -> None:
    engine = create_async_engine(async_url("postgresql://postgres@127.0.0.1:1/none"))
    try:
        assert await migrate.SchemaGate(engine, timeout=2)() is False
    finally:
        await engine.dispose()
