"""Exact totals: job_counts (migration 0011) equals COUNT(*) per (user, status), whoever writes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.core import migrate
from tests.support import databases

_COUNTED = "SELECT user_id, status, count(*) FROM jobs GROUP BY 1, 2"
_COUNTERS = "SELECT user_id, status, n FROM job_counts WHERE n <> 0"
_INSERT = "INSERT INTO jobs (id, user_id, prompt) SELECT unnest($1::text[]), unnest($2::text[]), 'p'"
_MOVE = "UPDATE jobs SET status = $2 WHERE id = ANY($1::text[])"
_ids = (f"j{n:08d}" for n in itertools.count())


def new_ids(count: int) -> list[str]:
    """Job ids no other insert of this module uses."""
    return [next(_ids) for _ in range(count)]


async def counts(connection: asyncpg.Connection, query: str) -> dict[tuple[str, str], int]:
    return {(row[0], row[1]): row[2] for row in await connection.fetch(query)}


async def assert_counters_match(connection: asyncpg.Connection) -> None:
    counted = await counts(connection, _COUNTED)
    assert counted, "the test counts something"
    assert await counts(connection, _COUNTERS) == counted


@pytest.fixture
async def connection(own_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a fresh database of this test's own."""
    opened = await databases.connect(own_database_url)
    yield opened
    await opened.close()


async def test_counters_follow_inserts_moves_and_deletes(connection: asyncpg.Connection) -> None:
    ids = new_ids(30)
    await connection.execute(_INSERT, ids, [f"u{n % 3}" for n in range(30)])
    await connection.execute("INSERT INTO jobs (id, user_id, prompt) VALUES ($1, 'u9', 'p')", new_ids(1)[0])
    await assert_counters_match(connection)

    await connection.execute(_MOVE, ids[:20], "processing")
    await connection.execute(_MOVE, ids[:8], "completed")
    await connection.execute(_MOVE, ids[8:12], "failed")
    await connection.execute(_MOVE, ids[20:25], "cancelled")
    await connection.execute("UPDATE jobs SET status = 'queued', retry_count = 1 WHERE id = $1", ids[12])
    await connection.execute("UPDATE jobs SET heartbeat_at = now() WHERE id = ANY($1::text[])", ids[13:16])
    await assert_counters_match(connection)

    await connection.execute("DELETE FROM jobs WHERE id = $1", ids[0])
    await connection.execute("DELETE FROM jobs WHERE id = ANY($1::text[])", ids[1:8] + ids[20:23])
    await connection.execute("UPDATE jobs SET user_id = 'u7' WHERE id = ANY($1::text[])", ids[26:28])
    await assert_counters_match(connection)

    await connection.execute("TRUNCATE jobs CASCADE")
    assert await counts(connection, _COUNTERS) == {}


async def test_a_counter_that_falls_to_zero_counts_again(connection: asyncpg.Connection) -> None:
    first = new_ids(1)
    await connection.execute(_INSERT, first, ["u1"])
    await connection.execute("UPDATE jobs SET status = 'cancelled' WHERE id = $1", first[0])
    assert await counts(connection, "SELECT user_id, status, n FROM job_counts WHERE status = 'queued'") == {
        ("u1", "queued"): 0
    }

    await connection.execute(_INSERT, new_ids(2), ["u1", "u1"])

    await assert_counters_match(connection)


async def create_and_move(url: str, user: str, rounds: int) -> None:
    """rounds transactions of one connection: a job of user is created, then moved on."""
    connection = await databases.connect(url)
    try:
        for _ in range(rounds):
            (job,) = new_ids(1)
            await connection.execute(_INSERT, [job], [user])
            await connection.execute(_MOVE, [job], "processing")
            await connection.execute(_MOVE, [job], "completed" if int(job[1:]) % 2 else "failed")
    finally:
        await connection.close()


async def test_concurrent_creates_and_moves_of_one_user_lose_no_count(
    own_database_url: str, connection: asyncpg.Connection
) -> None:
    await asyncio.gather(*(create_and_move(own_database_url, "busy", rounds=25) for _ in range(12)))

    await assert_counters_match(connection)
    assert sum((await counts(connection, _COUNTERS)).values()) == 12 * 25


async def insert_both_orders(url: str, *, users: tuple[str, str], statements: int) -> None:
    """Multi-row inserts whose rows alternate between two users, the first of users first."""
    connection = await databases.connect(url)
    try:
        for _ in range(statements):
            await connection.execute(_INSERT, new_ids(100), [users[n % 2] for n in range(100)])
    finally:
        await connection.close()


async def test_statements_over_two_users_in_opposite_orders_never_deadlock(
    own_database_url: str, connection: asyncpg.Connection
) -> None:
    """Each statement locks its counters in (user, status) order, whatever the order of its rows;
    locking them row by row, these statements would wait for each other."""
    await asyncio.gather(
        *(
            insert_both_orders(own_database_url, users=("a", "b") if n % 2 else ("b", "a"), statements=15)
            for n in range(8)
        )
    )

    await assert_counters_match(connection)
    assert await counts(connection, _COUNTERS) == {("a", "queued"): 6000, ("b", "queued"): 6000}


async def test_the_migration_counts_the_jobs_already_there() -> None:
    url = await databases.create_database(databases.server_url())
    try:
        await migrate.upgrade(url, "0010")
        connection = await databases.connect(url)
        try:
            await connection.execute(_INSERT, new_ids(5), ["old", "old", "old", "older", "older"])
            await connection.execute("UPDATE jobs SET status = 'processing' WHERE user_id = 'older'")
            await migrate.upgrade(url)
            await assert_counters_match(connection)
        finally:
            await connection.close()
    finally:
        await databases.drop_database(url)
