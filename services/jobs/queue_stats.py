"""GetQueueStats: what waits and what runs, per queue and per worker node, from the jobs table
(admin only: the servicer checks that before it calls here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.job.status import JobStatus
from services.core.models import Job
from services.core.queues import QUEUES
from videogen.v1 import queues_pb2

QUEUED, PROCESSING = JobStatus.QUEUED.value, JobStatus.PROCESSING.value


def _seconds_since(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return extract("epoch", func.now() - column)


async def queue_stats(sessions: async_sessionmaker[AsyncSession]) -> queues_pb2.QueueStats:
    """Every queue (high_priority first), and the worker nodes running jobs, busiest first."""
    waiting = Job.status == QUEUED
    per_queue = (
        select(
            Job.queue,
            func.count().filter(waiting & Job.enqueued_at.is_not(None)),
            func.count().filter(waiting & Job.enqueued_at.is_(None)),
            func.count().filter(Job.status == PROCESSING),
            func.coalesce(_seconds_since(func.min(Job.enqueued_at).filter(waiting)), 0),
        )
        .where(Job.status.in_((QUEUED, PROCESSING)))
        .group_by(Job.queue)
    )
    node = func.split_part(Job.worker_id, "/", 1)
    per_node = (
        select(node, func.count(), func.coalesce(_seconds_since(func.max(Job.heartbeat_at)), 0))
        .where(Job.status == PROCESSING, Job.worker_id.is_not(None))
        .group_by(node)
        .order_by(func.count().desc(), node)
    )
    async with sessions() as session:
        queues = {row[0]: row for row in (await session.execute(per_queue)).all()}
        nodes = (await session.execute(per_node)).all()
    return queues_pb2.QueueStats(
        queues=[_queue(name, queues.get(name)) for name in QUEUES],
        workers=[
            queues_pb2.WorkerLoad(node=name, running=count, last_heartbeat_seconds=max(0.0, float(age)))
            for name, count, age in nodes
        ],
    )


def _queue(name: str, row: Sequence[Any] | None) -> queues_pb2.QueueStat:
    if row is None:
        return queues_pb2.QueueStat(queue=name)
    _, waiting, scheduled, running, oldest = row
    return queues_pb2.QueueStat(
        queue=name,
        waiting=waiting,
        scheduled=scheduled,
        running=running,
        oldest_wait_seconds=max(0.0, float(oldest)),
    )
