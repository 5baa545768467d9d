"""GetQueueStats: what waits and what runs, per queue and per worker node, read from the jobs table."""

from __future__ import annotations

from tests.support import databases
from tests.support.deliveries import ServiceFactory
from tests.support.factories import create_job, processing_job
from videogen.v1 import queues_pb2


async def test_queue_stats_count_waiting_scheduled_and_running_jobs_per_queue(
    start_service: ServiceFactory, own_database_url: str
) -> None:
    service = await start_service()
    waiting = [await create_job(service.jobs, metadata={"priority": "low"}) for _ in range(2)]
    await create_job(service.jobs)  # not dispatched (no broker here): scheduled
    await processing_job(service.jobs, service.lifecycle, metadata={"priority": "high"})
    connection = await databases.connect(own_database_url)
    try:
        # As the dispatcher leaves them: published, one 30 s ago and one just now.
        await connection.execute(
            "UPDATE jobs SET enqueued_at = now() - interval '30 seconds' WHERE id = $1", waiting[0].id
        )
        await connection.execute("UPDATE jobs SET enqueued_at = now() WHERE id = $1", waiting[1].id)
    finally:
        await connection.close()

    stats = await service.jobs.GetQueueStats(queues_pb2.GetQueueStatsRequest())

    by_queue = {q.queue: q for q in stats.queues}
    assert [q.queue for q in stats.queues] == ["high_priority", "default", "low_priority"]
    assert (by_queue["high_priority"].waiting, by_queue["high_priority"].running) == (0, 1)
    assert (by_queue["default"].waiting, by_queue["default"].scheduled) == (0, 1)
    assert (by_queue["low_priority"].waiting, by_queue["low_priority"].scheduled) == (2, 0)
    assert 30 <= by_queue["low_priority"].oldest_wait_seconds < 60
    assert by_queue["default"].oldest_wait_seconds == 0
    assert [(w.node, w.running) for w in stats.workers] == [("worker-1", 1)]
    assert 0 <= stats.workers[0].last_heartbeat_seconds < 30


async def test_queue_stats_of_an_empty_system_name_every_queue(start_service: ServiceFactory) -> None:
    service = await start_service()

    stats = await service.jobs.GetQueueStats(queues_pb2.GetQueueStatsRequest())

    assert [(q.queue, q.waiting, q.scheduled, q.running) for q in stats.queues] == [
        ("high_priority", 0, 0, 0),
        ("default", 0, 0, 0),
        ("low_priority", 0, 0, 0),
    ]
    assert list(stats.workers) == []
