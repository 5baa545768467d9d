"""Dispatch latency and worker overhead of jobs the bench created, read from the jobs table.

Both ends of each interval are the database's clock (`now()` of the transactions that created,
started and completed the job), so the load generator's clock plays no part:
- dispatch: created_at (the create's transaction, just before its answer) to started_at (the
  worker's StartJob): the publish, the queue, the worker taking the message and its first call;
- worker overhead: started_at to completed_at less generation_time_ms (the provider's own
  rendering): routing, storing the video and the calls back to the jobs service.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import asyncpg

TIMES = """
SELECT status,
       extract(epoch FROM started_at - created_at) * 1000 AS dispatch_ms,
       extract(epoch FROM completed_at - started_at) * 1000 - generation_time_ms AS overhead_ms,
       generation_time_ms AS render_ms
FROM jobs WHERE id = ANY($1::text[])
"""
FINAL = ("completed", "failed", "cancelled")


@dataclass
class JobTimes:
    """The intervals of one set of jobs, in ms, and how many of them got that far."""

    name: str
    jobs: int = 0
    dispatch_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    render_ms: list[float] = field(default_factory=list)
    finished: int = 0

    @staticmethod
    def percentile(values: list[float], fraction: float) -> float:
        """The value under which this fraction of values lie (nan for none)."""
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def wait_and_read(database_url: str, name: str, ids: list[str], *, timeout: float) -> JobTimes:
    """Waits (at most timeout) until every job is final, then reads their intervals."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await connection.fetch(TIMES, ids)
            done = sum(row["status"] in FINAL for row in rows)
            if done == len(ids) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await connection.close()
    times = JobTimes(name=name, jobs=len(ids), finished=done)
    times.dispatch_ms = [float(row["dispatch_ms"]) for row in rows if row["dispatch_ms"] is not None]
    completed = [row for row in rows if row["status"] == "completed" and row["overhead_ms"] is not None]
    times.overhead_ms = [float(row["overhead_ms"]) for row in completed]
    times.render_ms = [float(row["render_ms"]) for row in completed]
    return times
