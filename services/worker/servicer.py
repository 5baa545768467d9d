"""WorkerService over gRPC: the stats snapshot as protobuf."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.worker.stats import Stats
from videogen.v1 import worker_pb2, worker_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class WorkerServicer(worker_pb2_grpc.WorkerServiceServicer):
    """Answers GetWorkerStats from a stats source."""

    def __init__(self, stats: Callable[[], Awaitable[Stats]]) -> None:
        self._stats = stats

    async def GetWorkerStats(
        self, request: worker_pb2.GetWorkerStatsRequest, context: Context
    ) -> worker_pb2.WorkerStats:
        snapshot = await self._stats()
        return worker_pb2.WorkerStats(
            active=sum(w.active for w in snapshot.workers),
            reserved=sum(w.reserved for w in snapshot.workers),
            queues=[worker_pb2.QueueDepth(queue=q, depth=d) for q, d in snapshot.queues.items()],
            workers=[
                worker_pb2.WorkerInfo(name=w.name, active=w.active, reserved=w.reserved, concurrency=w.concurrency)
                for w in snapshot.workers
            ],
        )
