"""Live job events: the publisher the transitions call after each commit (events.py), and the hub
WatchJob reads (watch.py), both on Redis pub/sub."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.models import Job
from services.core.runtime import Background
from services.jobs.live.events import EventPublisher, load_jobs
from services.jobs.live.watch import WatchHub, WatchPolicy
from services.jobs.settings import JobsSettings
from videogen.v1 import jobs_pb2


@dataclass(frozen=True)
class LiveEvents:
    """The publisher, the hub, and what they run."""

    publisher: EventPublisher
    hub: WatchHub
    background: Background


def open_live(
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

    async def close() -> None:
        with contextlib.suppress(Exception):
            await subscriber.aclose()

    policy = WatchPolicy(
        max_watchers=settings.jobs_watch_max_watchers,
        keepalive_seconds=settings.jobs_watch_keepalive_seconds,
        resync_seconds=settings.jobs_watch_resync_seconds,
    )
    hub = WatchHub(subscriber, load, policy, key_prefix=settings.celery_key_prefix)
    return LiveEvents(
        publisher=EventPublisher(client, sessions, key_prefix=settings.celery_key_prefix, to_proto=to_proto),
        hub=hub,
        # The hub's stop ends the open streams (UNAVAILABLE, so clients resume elsewhere) before the drain.
        background=Background(loops=(("watch-hub", hub.run),), before_stop=(hub.stop,), after_stop=(close,)),
    )
