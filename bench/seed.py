"""The 1,000,000-job table of the list benchmark, bulk-loaded by PostgreSQL itself.

One INSERT ... SELECT over generate_series (no client round trip a row), with every finished
status and the shape of a real completed job (its result, provider and model copied from one the
bench's own load completed), then VACUUM ANALYZE so the planner and the visibility map know the
table. Only final statuses: nothing seeded is ever dispatched to the worker.

The users: HEAVY_USER holds HEAVY_JOBS completed jobs, enough for a page as deep as the API
allows (JOBS_LIST_MAX_SKIP, 100,000); the rest are spread over SEED_USERS users, one in twenty
failed and one in twenty cancelled.
"""

from __future__ import annotations

import time

import asyncpg

ROWS = 1_000_000
HEAVY_USER = "bench-heavy"
HEAVY_JOBS = 150_000
SEED_USERS = 1000
SEED = """
WITH template AS (
    SELECT result, used_provider, used_model, generation_time_ms, metadata
    FROM jobs WHERE status = 'completed' AND result IS NOT NULL LIMIT 1
)
INSERT INTO jobs (id, user_id, status, prompt, metadata, result, used_provider, used_model,
                  generation_time_ms, error_message, queue, progress_percent, progress_stage,
                  created_at, updated_at, started_at, completed_at, run_after)
SELECT 'c' || lpad(to_hex(n), 24, '0'),
       CASE WHEN n <= $2 THEN $3 ELSE 'bench-seed-' || (n % $4) END,
       s.status, 'seeded job ' || n, t.metadata,
       CASE WHEN s.status = 'completed' THEN t.result END,
       t.used_provider, t.used_model, t.generation_time_ms,
       CASE WHEN s.status = 'failed' THEN 'seeded failure' END,
       'default', 100, s.status,
       now() - make_interval(secs => n), now() - make_interval(secs => n),
       now() - make_interval(secs => n), now() - make_interval(secs => n),
       now() - make_interval(secs => n)
FROM generate_series(1, $1) AS n
CROSS JOIN template AS t
CROSS JOIN LATERAL (
    SELECT CASE WHEN n <= $2 THEN 'completed'
                WHEN n % 20 = 0 THEN 'failed'
                WHEN n % 20 = 1 THEN 'cancelled'
                ELSE 'completed' END AS status
) AS s
"""


async def seed(database_url: str, rows: int = ROWS) -> float:
    """Loads rows jobs (needs one completed job as the template); the seconds it took."""
    began = time.monotonic()
    connection = await asyncpg.connect(database_url, command_timeout=1800)
    try:
        status = await connection.execute(SEED, rows, HEAVY_JOBS, HEAVY_USER, SEED_USERS)
        if status != f"INSERT 0 {rows}":
            raise RuntimeError(f"seeding answered {status!r}: no completed job to copy?")
        await connection.execute("VACUUM ANALYZE jobs")
    finally:
        await connection.close()
    return time.monotonic() - began


def list_path(user: str, *, skip: int = 0, status: str = "completed", cursor: str | None = None) -> str:
    """The list query of one page, from skip or after a cursor."""
    after = f"&cursor={cursor}" if cursor is not None else ""
    return f"/api/v1/jobs?userId={user}&status={status}&skip={skip}&take=20{after}"
