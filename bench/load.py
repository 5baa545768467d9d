"""The load generator: one asyncio process, one keep-alive connection per sender (bench/client.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.client import Connection

# The ids of created jobs a level keeps, for reads and for dispatch times.
MAX_IDS = 20_000
TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}
# A request builds its (method, path, json body) from its sequence number.
Request = Callable[[int], tuple[str, str, dict[str, Any] | None]]


@dataclass
class LevelResult:
    """What one level of load measured: answers by status, latencies of the 2xx ones."""

    name: str
    concurrency: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    ids: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Successful requests a second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """The latency (ms) under which this fraction of successful requests answered."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def create_request(label: str, users: int = 1000) -> Request:
    """POST /api/v1/jobs of a tiny video, spread over many userIds."""

    def build(n: int) -> tuple[str, str, dict[str, Any] | None]:
        body = {"userId": f"bench-user-{n % users}", "prompt": f"bench {label} {n}", "metadata": dict(TINY)}
        return "POST", "/api/v1/jobs", body

    return build


async def run_level(
    base_url: str, request: Request, *, name: str, concurrency: int, seconds: float, max_requests: int
) -> LevelResult:
    """concurrency senders in a loop until seconds pass or max_requests are sent."""
    result = LevelResult(name=name, concurrency=concurrency)
    counter = iter(range(max_requests))
    deadline = time.monotonic() + seconds

    async def sender() -> None:
        connection = Connection(base_url)
        try:
            for n in counter:
                if time.monotonic() > deadline:
                    return
                await send(connection, request(n), result)
        finally:
            await connection.close()

    began = time.monotonic()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    result.seconds = time.monotonic() - began
    return result


async def run_paced(
    base_url: str, request: Request, *, name: str, rate: float, seconds: float, connections: int = 64
) -> LevelResult:
    """An open loop: request n is due at n / rate seconds, whether or not earlier ones answered,
    on a pool of keep-alive connections. A latency counts from when its request was due, so a
    system that falls behind shows it (no coordinated omission)."""
    result = LevelResult(name=name, concurrency=connections)
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    opened = [Connection(base_url) for _ in range(connections)]
    for connection in opened:
        pool.put_nowait(connection)

    async def one(n: int, due: float) -> None:
        connection = await pool.get()
        try:
            await send(connection, request(n), result, due=due)
        finally:
            pool.put_nowait(connection)

    began = time.perf_counter()
    sent: list[asyncio.Task[None]] = []
    try:
        for n in range(int(rate * seconds)):
            due = began + n / rate
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            sent.append(asyncio.create_task(one(n, due)))
        await asyncio.gather(*sent)
    finally:
        for task in sent:
            task.cancel()
        for connection in opened:
            await connection.close()
    result.seconds = time.perf_counter() - began
    return result


async def send(
    connection: Connection,
    request: tuple[str, str, dict[str, Any] | None],
    result: LevelResult,
    *,
    due: float | None = None,
) -> None:
    """One request, its latency (from due, a perf_counter time, when given) and answer counted in result."""
    method, path, body = request
    began = time.perf_counter() if due is None else due
    try:
        status, content = await connection.request(method, path, body)
    except (OSError, asyncio.IncompleteReadError, ValueError):
        result.failures += 1
        return
    elapsed = time.perf_counter() - began
    result.statuses[status] += 1
    if 200 <= status < 300:
        result.latencies.append(elapsed)
        if method == "POST" and len(result.ids) < MAX_IDS:
            result.ids.append(str(json.loads(content).get("id", "")))
