"""Live job events: after each committed change, the job is published on its Redis channel.

Redis pub/sub carries the news, PostgreSQL keeps the truth: a message lost (Redis down at that
moment) is made good by the watchers' resynchronisation (services/jobs/live/watch.py), so a failed
publish is logged and never fails the change that caused it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.job.status import STATUS_TO_PROTO
from services.core.logging import get_logger
from services.core.models import Job
from services.jobs import repository
from videogen.v1 import jobs_pb2

log = get_logger(__name__)
_STATUS_EVENT = {number: f"job.{status.value}" for status, number in STATUS_TO_PROTO.items()}
KEEPALIVE = "job.keepalive"
UNPUBLISHED = Counter(
    "job_events_unpublished_total",
    "Job changes whose live event Redis did not take (watchers catch up at their next resync).",
)


def channel_of(key_prefix: str, job_id: str) -> str:
    """The pub/sub channel of one job's events."""
    return f"{key_prefix}jobs:events:{job_id}"


def event_type(job: jobs_pb2.Job, previous: int | None) -> str:
    """What a state of the job means to a watcher whose last state had status previous
    (None: nothing sent yet), in the names webhooks use: job.queued, job.progress, ..."""
    if job.status == jobs_pb2.JOB_STATUS_PROCESSING and previous == jobs_pb2.JOB_STATUS_PROCESSING:
        return "job.progress"
    if job.status == jobs_pb2.JOB_STATUS_QUEUED and job.retry_count > 0:
        return "job.retrying"
    return _STATUS_EVENT[job.status]


async def load_jobs(sessions: async_sessionmaker[AsyncSession], job_ids: Collection[str]) -> Sequence[Job]:
    """The jobs among job_ids that still exist, in one query."""
    if not job_ids:
        return []
    async with sessions() as session:
        return await repository.get_jobs(session, job_ids)


class EventPublisher:
    """Publishes a job's state on its channel; every failure is logged, none is raised."""

    def __init__(
        self,
        client: aioredis.Redis,
        sessions: async_sessionmaker[AsyncSession],
        *,
        key_prefix: str,
        to_proto: Callable[[Job], jobs_pb2.Job],
    ) -> None:
        self._client = client
        self._sessions = sessions
        self._key_prefix = key_prefix
        self._to_proto = to_proto

    async def publish(self, job: Job) -> None:
        """Called after the commit of a change of job."""
        try:
            await self._client.publish(channel_of(self._key_prefix, job.id), self._to_proto(job).SerializeToString())
        except (RedisError, OSError) as exc:
            UNPUBLISHED.inc()
            log.warning("job.event_not_published", job_id=job.id, event_id=job.event_seq, error=repr(exc))

    async def publish_ids(self, job_ids: Collection[str]) -> None:
        """Publishes the current state of jobs changed by a bulk statement (the reaper's)."""
        try:
            jobs = await load_jobs(self._sessions, job_ids)
        except Exception as exc:
            log.warning("job.events_not_published", jobs=len(job_ids), error=repr(exc))
            return
        for job in jobs:
            await self.publish(job)
