"""The async SQLAlchemy engine, sessions, and how database outages are recognised."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy import make_url
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from services.core.settings import CoreSettings


def async_url(url: str) -> URL:
    """The SQLAlchemy asyncpg URL for a postgres:// or postgresql:// URL."""
    parsed = make_url(url)
    if parsed.get_backend_name() not in {"postgres", "postgresql"}:
        raise ValueError("DATABASE_URL must be a postgresql:// URL")
    return parsed.set(drivername="postgresql+asyncpg")


def create_engine(settings: CoreSettings, url: str) -> AsyncEngine:
    """An engine with a bounded pool and timeouts from settings. Statement parameters stay out of
    its errors (hide_parameters): they hold webhook URLs with tokens, prompts, keys' hashes."""
    return create_async_engine(
        async_url(url),
        hide_parameters=True,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_timeout=settings.db_connect_timeout,
        connect_args={
            "timeout": settings.db_connect_timeout,
            "command_timeout": settings.db_statement_timeout,
            "server_settings": {"application_name": settings.app_name},
        },
    )


def create_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def create_read_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for a single read statement: autocommit, so no BEGIN and no ROLLBACK round trip
    around it (one statement sees one snapshot either way)."""
    return async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)


_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, timed out, unresolvable: every socket failure
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
    sa_exc.TimeoutError,
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether exc means the database is unreachable, not that the query was wrong."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNAVAILABLE_TYPES):
            return True
        if isinstance(current, sa_exc.InterfaceError | sa_exc.OperationalError):
            return True
        current = current.__cause__ or current.__context__
    return False
