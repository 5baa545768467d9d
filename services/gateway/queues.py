"""/api/v1/queues: what waits and what runs, per queue and per worker node (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.deps import BackendsDep, call
from services.gateway.keys import AUTH_ERRORS
from services.gateway.schemas import Problem
from videogen.v1 import queues_pb2

router = APIRouter(prefix="/api/v1/queues", tags=["operations"])
_EXAMPLE: dict[str, Any] = {
    "queues": [
        {"queue": "high_priority", "waiting": 0, "scheduled": 0, "running": 1, "oldestWaitSeconds": 0.0},
        {"queue": "default", "waiting": 12, "scheduled": 2, "running": 3, "oldestWaitSeconds": 4.2},
        {"queue": "low_priority", "waiting": 40, "scheduled": 0, "running": 0, "oldestWaitSeconds": 95.0},
    ],
    "workers": [{"node": "worker-7d9f", "running": 4, "lastHeartbeatSeconds": 1.3}],
}


class QueueStat(BaseModel):
    """One queue, as the jobs table sees it."""

    queue: str = Field(description="`high_priority`, `default` or `low_priority`")
    waiting: int = Field(description="Queued jobs whose message is on the queue, waiting for a worker")
    scheduled: int = Field(description="Queued jobs not on the queue yet: a retry's backoff, or not dispatched yet")
    running: int = Field(description="Processing jobs that came from this queue")
    oldestWaitSeconds: float = Field(description="How long the oldest waiting job has waited; 0 when none waits")


class WorkerLoad(BaseModel):
    """A worker node running jobs now."""

    node: str = Field(description="The node part of the jobs' worker id (the worker's host name)")
    running: int = Field(description="Processing jobs on this node")
    lastHeartbeatSeconds: float = Field(description="Seconds since the node's latest heartbeat on any of them")


class QueueStats(BaseModel):
    """Every queue, high_priority first, and the worker nodes running jobs, busiest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    queues: list[QueueStat]
    workers: list[WorkerLoad]


@router.get(
    "",
    response_model=QueueStats,
    responses={**AUTH_ERRORS, 503: {"model": Problem}},
    summary="Queues and the worker nodes running jobs (admin)",
)
async def queue_stats(backends: BackendsDep) -> QueueStats:
    """Per queue, the jobs waiting, scheduled and running and how long the oldest has waited; per
    worker node, the jobs it runs. Read from the jobs table: the broker's own depths are the
    `job_queue_depth` metric."""
    reply = await call(
        backends.jobs.GetQueueStats, queues_pb2.GetQueueStatsRequest(), backends=backends, service="jobs"
    )
    return QueueStats(
        queues=[
            QueueStat(
                queue=q.queue,
                waiting=q.waiting,
                scheduled=q.scheduled,
                running=q.running,
                oldestWaitSeconds=round(q.oldest_wait_seconds, 3),
            )
            for q in reply.queues
        ],
        workers=[
            WorkerLoad(node=w.node, running=w.running, lastHeartbeatSeconds=round(w.last_heartbeat_seconds, 3))
            for w in reply.workers
        ],
    )
