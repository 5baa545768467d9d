"""Secrets never shown: URL passwords masked in banners and log lines, SQL parameters kept out of
database errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core import db
from services.core.db import async_url
from services.core.redact import redact
from services.core.settings import CoreSettings
from tests.support.processes import ROOT, clean_env

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("shown", "masked"),
    [
        (f"postgresql://videogen:{SECRET}@db.example.com:5432/videogen", "postgresql://videogen:***@db.example.com:5432/videogen"),
        (f"redis://:{SECRET}@redis:6379/0", "redis://:***@redis:6379/0"),
        (f"rediss://default:{SECRET}@cache:6380/1?ssl_cert_reqs=required", "rediss://default:***@cache:6380/1?ssl_cert_reqs=required"),
        (f"postgresql://videogen@db/videogen?password={SECRET}&sslmode=require", "postgresql://videogen@db/videogen?password=***&sslmode=require"),
        (f"https://hooks.example.com/in?token={SECRET}", "https://hooks.example.com/in?token=***"),
        (f"from postgresql://a:{SECRET}@h/d to redis://:{SECRET}@r/0", "from postgresql://a:***@h/d to redis://:***@r/0"),
    ],
)  # fmt: skip
def test_a_url_shows_everything_but_its_password(shown: str, masked: str) -> None:
    assert redact(shown) == masked


@pytest.mark.parametrize(
    "harmless",
    [
        "postgresql://postgres@/videogen?host=/srv/.data/postgres",
        "unix:///srv/.data/redis/redis.socket?db=0",
        "http://127.0.0.1:8000/api/v1/jobs?userId=u1&status=queued",
        "user@example.com wrote 3 jobs",
    ],
)
def test_a_url_without_a_password_is_shown_as_it_is(harmless: str) -> None:
    assert redact(harmless) == harmless


def test_log_lines_mask_url_passwords_whoever_logs_them() -> None:
    script = textwrap.dedent(
        f"""
        import logging
        from services.core.logging import configure_logging, get_logger
        configure_logging(service="test", level="INFO")
        get_logger("test").info("connecting", url="postgresql://videogen:{SECRET}@db/videogen")
        logging.getLogger("library").warning("broker at %s", "redis://:{SECRET}@redis:6379/0")
        try:
            raise ConnectionError("cannot reach https://hooks.example.com/in?token={SECRET}")
        except ConnectionError:
            get_logger("test").exception("failed")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT, env=clean_env()
    )

    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert SECRET not in result.stdout
    assert result.stdout.count("***") == 3


async def test_a_failing_statement_keeps_its_parameters_out_of_the_error(database_url: str) -> None:
    statement = text("INSERT INTO no_such_table (url) VALUES (:url)")
    parameters = {"url": f"https://hooks.example.com/in?token={SECRET}"}
    hidden, shown = (
        db.create_engine(CoreSettings(_env_file=None), database_url),
        create_async_engine(async_url(database_url)),
    )
    errors = []
    try:
        for engine in (hidden, shown):
            async with engine.connect() as connection:
                with pytest.raises(sa_exc.DBAPIError) as failed:
                    await connection.execute(statement, parameters)
                errors.append(str(failed.value))
    finally:
        await hidden.dispose()
        await shown.dispose()

    assert SECRET not in errors[0] and "hidden" in errors[0]
    assert SECRET in errors[1]  # what SQLAlchemy would print without hide_parameters
