"""Dispatch: the loop that publishes due jobs on the Celery queues, promotes waiting ones, reaps
expired leases and re-sends what Redis lost (dispatcher.py), over the publisher (publisher.py) and
the broker's view (broker.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.runtime import Background
from services.core.tasks import broker_redis_url, create_celery
from services.jobs.dispatch.broker import RedisBrokerWatch
from services.jobs.dispatch.dispatcher import Dispatcher, DispatchPolicy
from services.jobs.dispatch.publisher import JobPublisher
from services.jobs.settings import JobsSettings
from services.jobs.webhooks.outbox import WebhookOutbox


@dataclass(frozen=True)
class Dispatch:
    """The dispatcher and what it runs."""

    dispatcher: Dispatcher
    background: Background


def open_dispatch(
    settings: JobsSettings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    broker: str,
    watch_client: aioredis.Redis | None,
    webhooks: WebhookOutbox,
    on_reaped: Callable[[Collection[str]], Awaitable[None]] | None,
) -> Dispatch:
    """Publishes on broker's Celery queues; with watch_client, it also watches the queues' depths
    and the broker's epoch (REDIS_URL). The reaper's requeues and failures become webhook events
    and are told to on_reaped (live events)."""
    publisher = JobPublisher(
        create_celery(settings, broker=broker, name="videogen-jobs"),
        aioredis.Redis.from_url(broker_redis_url(broker), socket_timeout=2, socket_connect_timeout=2),
        key_prefix=settings.celery_key_prefix,
    )
    policy = DispatchPolicy(
        interval=settings.dispatch_interval,
        batch=settings.dispatch_batch,
        aging_seconds=settings.priority_aging_seconds,
        lease_seconds=settings.job_lease_seconds,
        orphan_after_seconds=settings.orphan_sweep_after_seconds,
        republish_after_seconds=settings.dispatch_republish_after_seconds,
    )
    watch = None if watch_client is None else RedisBrokerWatch(watch_client, settings)
    dispatcher = Dispatcher(sessions, publisher, policy, broker=watch, webhooks=webhooks, on_reaped=on_reaped)
    background = Background(
        loops=(("dispatcher", dispatcher.run),), before_stop=(dispatcher.stop,), after_stop=(publisher.close,)
    )
    return Dispatch(dispatcher=dispatcher, background=background)
