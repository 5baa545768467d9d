"""A fresh PostgreSQL database per test run, on DATABASE_URL's server or an embedded one."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import asyncpg
from sqlalchemy import make_url

from tests.support.tcp_proxy import Upstream

ROOT = Path(__file__).resolve().parents[2]


def server_url() -> str:
    """DATABASE_URL's server, or the embedded PostgreSQL of the tests when it is unset."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    from services.core.embedded import embedded_postgres

    return embedded_postgres(ROOT / ".data" / "test", "postgres")


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    """url pointing at another database of the same server."""
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def create_database(url: str, *, template: str | None = None) -> str:
    """Creates a uniquely named database on url's server (a copy of template) and answers its URL."""
    name = f"videogen_test_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        copy = f' TEMPLATE "{make_url(template).database}"' if template else ""
        await connection.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await connection.close()
    return with_database(url, name)


async def drop_database(url: str) -> None:
    """Drops url's database, closing whatever still uses it."""
    name = make_url(url).database
    connection = await asyncpg.connect(_asyncpg_dsn(with_database(url, "postgres")))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def connect(url: str) -> asyncpg.Connection:
    """A plain asyncpg connection, for looking at the database beside the service."""
    return await asyncpg.connect(_asyncpg_dsn(url))


def upstream_of(url: str) -> Upstream:
    """How to open a raw connection to url's server (TCP, or the unix socket of an embedded one)."""
    parsed = make_url(url)
    socket_dir = parsed.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        path = f"{socket_dir}/.s.PGSQL.{parsed.port or 5432}"
        return lambda: asyncio.open_unix_connection(path)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    return lambda: asyncio.open_connection(host, port)


def through_proxy(url: str, proxy_port: int) -> str:
    """url's database reached through a proxy on 127.0.0.1:proxy_port."""
    parsed = make_url(url)
    query = {key: value for key, value in parsed.query.items() if key != "host"}
    return parsed.set(host="127.0.0.1", port=proxy_port, query=query).render_as_string(hide_password=False)
