"""The dispatcher's view of the Celery broker: queue depths, and whether Redis lost its data."""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

from services.core.tasks import depth_keys, depths_of
from services.jobs.settings import JobsSettings


class RedisBrokerWatch:
    """The dispatcher's view of the Celery broker (the Redis of REDIS_URL)."""

    def __init__(self, client: aioredis.Redis, settings: JobsSettings) -> None:
        self._client = client
        self._settings = settings
        # Set once with NX: a Redis that restarted without its data no longer has it.
        self._epoch_key = f"{settings.celery_key_prefix}videogen:broker-epoch"

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each Celery queue (every priority list of it), in one round trip."""
        async with self._client.pipeline(transaction=False) as pipe:
            for key in depth_keys(self._settings):
                pipe.llen(key)
            return depths_of(self._settings, await pipe.execute())

    async def lost_its_data(self) -> bool:
        """True when the epoch key was missing (and is now set): a new or emptied Redis."""
        return bool(await self._client.set(self._epoch_key, uuid.uuid4().hex, nx=True))

    async def forget_epoch(self) -> None:
        """Deletes the epoch key, so that the next check reports a loss again."""
        await self._client.delete(self._epoch_key)
