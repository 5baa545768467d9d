"""What the workers are doing: queue depths from Redis and slots from Celery's inspect."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.core.settings import CoreSettings
from services.core.tasks import depth_keys, depths_of


@dataclass(frozen=True)
class WorkerSlots:
    """One Celery worker as inspect reports it."""

    name: str
    active: int
    reserved: int
    concurrency: int


@dataclass(frozen=True)
class Stats:
    """A snapshot of the workers and queues."""

    queues: dict[str, int]
    workers: list[WorkerSlots] = field(default_factory=list)


def queue_depths(client: redis.Redis, settings: CoreSettings) -> dict[str, int]:
    """Messages waiting in each of the three queues."""
    pipe = client.pipeline(transaction=False)
    for key in depth_keys(settings):
        pipe.llen(key)
    return depths_of(settings, pipe.execute())


class QueueDepthCollector(Collector):
    """job_queue_depth{queue}, read from Redis at each scrape."""

    def __init__(self, client: redis.Redis, settings: CoreSettings) -> None:
        self._client = client
        self._settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("job_queue_depth", "Jobs waiting in each Celery queue.", labels=["queue"])
        try:
            depths = queue_depths(self._client, self._settings)
        except redis.RedisError:
            return
        for queue, depth in depths.items():
            gauge.add_metric([queue], depth)
        yield gauge


async def gather_stats(app: Celery, client: redis.Redis, settings: CoreSettings, *, timeout: float) -> Stats:
    """Queue depths and every worker's active, reserved and concurrency, asked in parallel."""
    inspect = app.control.inspect(timeout=timeout)
    active, reserved, stats, depths = await asyncio.gather(
        asyncio.to_thread(inspect.active),
        asyncio.to_thread(inspect.reserved),
        asyncio.to_thread(inspect.stats),
        asyncio.to_thread(queue_depths, client, settings),
    )
    names = sorted(set(active or {}) | set(reserved or {}) | set(stats or {}))
    workers = [
        WorkerSlots(
            name=name,
            active=len((active or {}).get(name, [])),
            reserved=len((reserved or {}).get(name, [])),
            concurrency=_concurrency((stats or {}).get(name, {})),
        )
        for name in names
    ]
    return Stats(queues=depths, workers=workers)


def _concurrency(stats: dict[str, Any]) -> int:
    pool = stats.get("pool", {})
    value = pool.get("max-concurrency", 0) if isinstance(pool, dict) else 0
    return int(value) if isinstance(value, int) else 0
