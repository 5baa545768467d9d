"""Brings the database schema to the newest migration, safely from many processes at once."""

from __future__ import annotations

import argparse
import asyncio
from functools import cache
from pathlib import Path
from typing import ClassVar

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from services.core.db import async_url, is_unavailable
from services.core.embedded import resolve_database_url
from services.core.logging import configure_logging, get_logger
from services.core.settings import CoreSettings, load_settings

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works: it only has to be the same in every process that migrates.
_LOCK_KEY = 0x766964656F67656E


class MigrateSettings(CoreSettings):
    """What the migration reads: DATABASE_URL (or the embedded server's place); no secret, so
    that its Job gets the database's credentials alone."""

    REQUIRES_API_KEY: ClassVar[bool] = False
    REQUIRES_SECRET_KEY: ClassVar[bool] = False


def alembic_config() -> Config:
    """The Alembic configuration, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    return config


@cache
def revisions() -> tuple[str, frozenset[str]]:
    """This code's newest migration and every migration it knows."""
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations under {MIGRATIONS}")
    return head, frozenset(revision.revision for revision in script.walk_revisions())


class SchemaGate:
    """Whether a service may serve: the database answers and its schema is not behind this code.

    A schema newer than this code (a rollout migrated ahead of the old pods) is fine, since
    migrations add before they remove; a missing or older one means the migration has not run
    yet, and serving would answer errors. Readiness waits for it instead."""

    def __init__(self, engine: AsyncEngine, *, timeout: float) -> None:
        self._engine = engine
        self._timeout = timeout
        self._reported: str | None = None

    async def __call__(self) -> bool:
        head, known = revisions()
        try:
            async with asyncio.timeout(self._timeout), self._engine.connect() as connection:
                exists = await connection.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
                found = await connection.scalar(text("SELECT version_num FROM alembic_version")) if exists else None
        except Exception as exc:
            if is_unavailable(exc):
                return False
            raise
        behind = found is None or (found in known and found != head)
        if behind and found != self._reported:
            get_logger(__name__).warning("database.schema_behind", found=found, needed=head)
        self._reported = found if behind else None
        return not behind


async def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrades to revision under an advisory lock, in one transaction."""
    await _migrate(database_url, "upgrade", revision)


async def downgrade(database_url: str, revision: str) -> None:
    """Downgrades to revision under the same advisory lock."""
    await _migrate(database_url, "downgrade", revision)


async def _migrate(database_url: str, action: str, revision: str) -> None:
    engine = create_async_engine(async_url(database_url), poolclass=NullPool, hide_parameters=True)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            await connection.run_sync(_run, action, revision)
    finally:
        await engine.dispose()


async def current(database_url: str) -> str | None:
    """The revision the database is at, or None before the first migration."""
    engine = create_async_engine(async_url(database_url), poolclass=NullPool, hide_parameters=True)
    try:
        async with engine.connect() as connection:
            exists = await connection.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            if not exists:
                return None
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
            return str(version) if version is not None else None
    finally:
        await engine.dispose()


async def upgrade_when_reachable(database_url: str, *, timeout: float) -> None:
    """Upgrades to head, waiting up to timeout seconds for the database to answer."""
    log = get_logger(__name__)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await upgrade(database_url)
            return
        except Exception as exc:
            if not is_unavailable(exc) or loop.time() > deadline:
                raise
            log.warning("database.waiting", error=repr(exc))
            await asyncio.sleep(1)


def _run(connection: Connection, action: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    if action == "upgrade":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


def main() -> None:
    """`python -m services.core.migrate [revision]`: upgrade DATABASE_URL (or the embedded one)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("revision", nargs="?", default="head")
    args = parser.parse_args()
    settings = load_settings(MigrateSettings)
    configure_logging(service="migrate", level=settings.log_level)
    url = resolve_database_url(settings)
    asyncio.run(upgrade(url, args.revision))
    get_logger(__name__).info("database.migrated", revision=asyncio.run(current(url)))


if __name__ == "__main__":
    main()
