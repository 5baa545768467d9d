"""The load generator: one asyncio process, one httpx pool sized to the concurrency."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

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
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    counter = iter(range(max_requests))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        deadline = time.monotonic() + seconds

        async def sender() -> None:
            for n in counter:
                if time.monotonic() > deadline:
                    return
                method, path, body = request(n)
                began = time.perf_counter()
                try:
                    response = await client.request(method, path, json=body)
                except httpx.HTTPError:
                    result.failures += 1
                    continue
                elapsed = time.perf_counter() - began
                result.statuses[response.status_code] += 1
                if response.is_success:
                    result.latencies.append(elapsed)
                    if method == "POST" and len(result.ids) < 5000:
                        result.ids.append(str(response.json().get("id", "")))

        began = time.monotonic()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        result.seconds = time.monotonic() - began
    return result
