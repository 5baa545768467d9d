"""Wires live job events: the publisher the transitions call, and the hub WatchJob reads."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.models import Job
from services.jobs.events import EventPublisher, load_jobs
from services.jobs.settings import JobsSettings
from services.jobs.watch import WatchHub, WatchPolicy
from videogen.v1 import jobs_pb2


@dataclass
class LiveEvents:
    """The publisher, the hub, and the task that reads the hub's subscription."""

    publisher: EventPublisher
    hub: WatchHub
    subscriber: aioredis.Redis
    task: asyncio.Task[None] | None = None

    @classmethod
    def open(
        cls,
        settings: JobsSettings,
        *,
        client: aioredis.Redis,
        redis_url: str,
        sessions: async_sessionmaker[AsyncSession],
        to_proto: Callable[[Job], jobs_pb2.Job],
    ) -> LiveEvents:
        """Publishes with client; subscribes on a connection of its own, which fails fast (no
        retries inside redis-py) so that the hub sees a loss and re-reads the watched jobs."""
        subscriber = aioredis.Redis.from_url(
            redis_url,
            socket_connect_timeout=2,
            health_check_interval=max(1, int(settings.jobs_watch_keepalive_seconds)),
            retry=Retry(NoBackoff(), 0),
            # Names the connection in CLIENT LIST, for operators (and the tests that cut it).
            client_name=f"{settings.celery_key_prefix}videogen-jobs-watch",
        )

        async def load(job_ids: Collection[str]) -> Sequence[jobs_pb2.Job]:
            return [to_proto(job) for job in await load_jobs(sessions, job_ids)]

        policy = WatchPolicy(
            max_watchers=settings.jobs_watch_max_watchers,
            keepalive_seconds=settings.jobs_watch_keepalive_seconds,
            resync_seconds=settings.jobs_watch_resync_seconds,
        )
        return cls(
            publisher=EventPublisher(client, sessions, key_prefix=settings.celery_key_prefix, to_proto=to_proto),
            hub=WatchHub(subscriber, load, policy, key_prefix=settings.celery_key_prefix),
            subscriber=subscriber,
        )

    def start(self) -> asyncio.Task[None]:
        """Starts reading the subscription; the caller cancels the task on stop."""
        self.task = asyncio.create_task(self.hub.run(), name="watch-hub")
        return self.task

    def stop(self) -> None:
        """Ends the open streams (UNAVAILABLE, so clients resume elsewhere) before the drain."""
        self.hub.stop()

    async def close(self) -> None:
        """Closes the subscription's connection."""
        with contextlib.suppress(Exception):
            await self.subscriber.aclose()
