"""The dispatcher takes back what crashes lose: messages Redis dropped, jobs of silent workers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest
import redis.asyncio as aioredis

from services.core import db
from services.core.tasks import broker_url, create_celery
from services.jobs.dispatch.dispatcher import Dispatcher, DispatchPolicy
from services.jobs.dispatch.publisher import JobPublisher
from services.jobs.server import JobsServer
from tests.conftest import jobs_settings, start_brokered_jobs
from tests.jobs.test_dispatch import Broker
from tests.support import databases
from tests.support.brokers import drop_keys
from tests.support.factories import create_job
from tests.support.internal import jobs_clients
from tests.support.tcp_proxy import TcpProxy
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub

LEASE = 1.5
ORPHAN_AFTER = 1.0


@dataclass
class Recovering:
    jobs: JobServiceAsyncStub
    lifecycle: JobLifecycleServiceAsyncStub
    broker: Broker
    server: JobsServer


@pytest.fixture
async def recovering(own_database_url: str, redis_url: str) -> AsyncIterator[Recovering]:
    prefix = f"r{uuid.uuid4().hex[:10]}-"
    settings = jobs_settings(
        celery_key_prefix=prefix,
        dispatch_interval=0.1,
        priority_aging_seconds=3600,
        job_lease_seconds=LEASE,
        orphan_sweep_after_seconds=ORPHAN_AFTER,
    )
    server = await start_brokered_jobs(settings, database_url=own_database_url, redis_url=redis_url)
    async with jobs_clients(server.port) as clients:
        yield Recovering(clients.jobs, clients.lifecycle, Broker(redis_url, prefix), server)
    await server.stop(0)
    drop_keys(redis_url, prefix)


async def wait_job(jobs: JobServiceAsyncStub, job_id: str, done: object, timeout: float = 10) -> jobs_pb2.Job:
    async with asyncio.timeout(timeout):
        while True:
            job = await jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))
            if callable(done) and done(job):
                return job
            await asyncio.sleep(0.05)


async def test_everything_queued_is_published_again_when_redis_lost_its_data(recovering: Recovering) -> None:
    jobs, broker = recovering.jobs, recovering.broker
    created = [await create_job(jobs) for _ in range(3)]
    await broker.wait_depth("default", 3)

    # Redis restarts without its data: every key is gone, the jobs are still queued.
    for key in broker.client.scan_iter(f"{broker.prefix}*"):
        broker.client.delete(key)

    # At once, not after ORPHAN_AFTER: the missing epoch key says the data is gone.
    await broker.wait_depth("default", 3, timeout=ORPHAN_AFTER)
    assert sorted(m["job_id"] for m in broker.messages("default")) == sorted(job.id for job in created)
    assert all(message["attempt"] == 0 for message in broker.messages("default"))


async def test_a_message_lost_from_an_empty_queue_is_published_again(recovering: Recovering) -> None:
    jobs, broker = recovering.jobs, recovering.broker
    created = [await create_job(jobs) for _ in range(3)]
    await broker.wait_depth("default", 3)
    await asyncio.sleep(ORPHAN_AFTER)

    # A worker that took the messages died with them (the epoch key is still there).
    broker.client.delete(f"{broker.prefix}default")

    await broker.wait_depth("default", 3, timeout=5)
    assert sorted(m["job_id"] for m in broker.messages("default")) == sorted(job.id for job in created)


async def test_a_queue_with_a_backlog_is_left_alone(recovering: Recovering) -> None:
    jobs, broker = recovering.jobs, recovering.broker
    for _ in range(2):
        await create_job(jobs)
    await broker.wait_depth("default", 2)

    await asyncio.sleep(ORPHAN_AFTER + 1)

    # Both messages are still there: nothing was lost, so nothing was published twice.
    assert broker.depth("default") == 2


async def test_a_job_whose_worker_went_silent_is_queued_again_for_its_next_attempt(
    recovering: Recovering,
) -> None:
    jobs, broker = recovering.jobs, recovering.broker
    lifecycle = recovering.lifecycle
    job = await create_job(jobs, max_retries=1)
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="dies", attempt=0))
    broker.client.delete(f"{broker.prefix}default")

    requeued = await wait_job(jobs, job.id, lambda j: j.status == jobs_pb2.JOB_STATUS_QUEUED, timeout=LEASE + 5)

    assert requeued.retry_count == 1
    assert "stopped answering" in requeued.error_message
    await broker.wait_depth("default", 1)
    assert broker.messages("default")[0] == {"job_id": job.id, "attempt": 1, "request_id": None}
    # The worker that went silent is fenced off; the next attempt's worker is not.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=50, stage="x", attempt=0))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # Its last attempt goes silent too: no retry is left, so it fails.
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="dies-too", attempt=1))
    failed = await wait_job(jobs, job.id, lambda j: j.status == jobs_pb2.JOB_STATUS_FAILED, timeout=LEASE + 5)
    assert failed.retry_count == 1 and failed.HasField("completed_at")


async def test_heartbeats_keep_a_long_attempt_alive(recovering: Recovering) -> None:
    jobs = recovering.jobs
    lifecycle = recovering.lifecycle
    job = await create_job(jobs)
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="alive", attempt=0))

    # A heartbeat every sixth of a lease: a loaded machine's stalls of a second never let it lapse.
    for _ in range(int(LEASE * 3 / 0.25)):
        await lifecycle.ReportProgress(
            lifecycle_pb2.ReportProgressRequest(id=job.id, percent=10, stage="render", attempt=0)
        )
        await asyncio.sleep(0.25)

    still = await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert (still.status, still.retry_count) == (jobs_pb2.JOB_STATUS_PROCESSING, 0)


async def test_a_message_lost_behind_a_backlog_is_published_again_after_the_bound(
    own_database_url: str, redis_url: str
) -> None:
    prefix = f"r{uuid.uuid4().hex[:10]}-"
    settings = jobs_settings(
        celery_key_prefix=prefix,
        dispatch_interval=0.1,
        priority_aging_seconds=3600,
        orphan_sweep_after_seconds=3600,
        dispatch_republish_after_seconds=1.0,
    )
    server = await start_brokered_jobs(settings, database_url=own_database_url, redis_url=redis_url)
    broker = Broker(redis_url, prefix)
    queue = f"{prefix}high_priority"
    try:
        async with jobs_clients(server.port) as clients:
            kept = await create_job(clients.jobs, metadata={"priority": "high"})
            lost = await create_job(clients.jobs, metadata={"priority": "high"})
            await broker.wait_depth("high_priority", 2)
            # A worker died holding lost's message; kept's stays, so the queue is never empty and
            # the empty-queue sweep never looks (and high-priority jobs are never promoted).
            broker.client.lpop(queue)  # the newest: lost's
            assert [m["job_id"] for m in broker.messages("high_priority")] == [kept.id]

            async with asyncio.timeout(10):
                while lost.id not in [m["job_id"] for m in broker.messages("high_priority")]:
                    await asyncio.sleep(0.05)
            # Every copy names the first attempt: a worker starts the job once and skips the rest.
            assert {m["attempt"] for m in broker.messages("high_priority")} == {0}
    finally:
        await server.stop(0)
        drop_keys(redis_url, prefix)


async def test_a_database_outage_longer_than_the_lease_burns_no_attempt(own_database_url: str, redis_url: str) -> None:
    proxy = TcpProxy(databases.upstream_of(own_database_url))
    await proxy.start()
    prefix = f"r{uuid.uuid4().hex[:10]}-"
    settings = jobs_settings(
        celery_key_prefix=prefix, dispatch_interval=0.1, priority_aging_seconds=3600, job_lease_seconds=LEASE
    )
    server = await start_brokered_jobs(
        settings, database_url=databases.through_proxy(own_database_url, proxy.port), redis_url=redis_url
    )
    try:
        async with jobs_clients(server.port) as clients:
            job = await create_job(clients.jobs)
            await clients.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w", attempt=0))

            await proxy.cut()  # PostgreSQL unreachable for twice the lease: no heartbeat can land
            await asyncio.sleep(2 * LEASE)
            await proxy.start()

            # The worker is heard again well within a lease of the database's return.
            async with asyncio.timeout(10):
                while True:
                    try:
                        await clients.lifecycle.ReportProgress(
                            lifecycle_pb2.ReportProgressRequest(id=job.id, percent=50, stage="rendering", attempt=0)
                        )
                        break
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # not refused: not reaped
                        await asyncio.sleep(0.05)
            await asyncio.sleep(LEASE / 2)
            kept = await clients.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
            assert (kept.status, kept.retry_count) == (jobs_pb2.JOB_STATUS_PROCESSING, 0)
    finally:
        await server.stop(0)
        await proxy.cut()
        drop_keys(redis_url, prefix)


async def test_the_reaper_waits_a_lease_after_a_start_and_after_a_freeze(own_database_url: str, redis_url: str) -> None:
    prefix = f"r{uuid.uuid4().hex[:10]}-"
    settings = jobs_settings(celery_key_prefix=prefix)
    engine = db.create_engine(settings, own_database_url)
    broker = broker_url(settings, redis_url)
    publisher = JobPublisher(create_celery(settings, broker=broker), aioredis.Redis.from_url(redis_url))
    now = [1000.0]
    dispatcher = Dispatcher(
        db.create_sessions(engine), publisher, DispatchPolicy(lease_seconds=10), clock=lambda: now[0]
    )
    try:
        held = []
        for step in (0, 4, 4, 2, 10, 4, 4, 2):  # rounds a few seconds apart, then one 10 s gap
            now[0] += step
            await dispatcher.dispatch_once()
            held.append(dispatcher.holds_a_lease(now[0]))
        # A lease after the first round; the gap (a frozen process) starts the count again.
        assert held == [False, False, False, True, False, False, False, True]
    finally:
        await publisher.close()
        await engine.dispose()
        drop_keys(redis_url, prefix)


async def test_a_reap_decided_before_a_stall_takes_nothing_and_waits_a_lease_again(
    own_database_url: str, redis_url: str
) -> None:
    prefix = f"r{uuid.uuid4().hex[:10]}-"
    # The server's own reaper never acts here (a lease of an hour): the test's dispatcher does.
    settings = jobs_settings(celery_key_prefix=prefix, job_lease_seconds=3600)
    server = await start_brokered_jobs(settings, database_url=own_database_url, redis_url=redis_url)
    engine = db.create_engine(settings, own_database_url)
    publisher = JobPublisher(
        create_celery(settings, broker=broker_url(settings, redis_url)), aioredis.Redis.from_url(redis_url)
    )
    now, stall = [1000.0], [0.0]

    def clock() -> float:
        # The round's first reading is its decision; when stall is set, the later ones come that
        # much later (the round's statements stalled), once.
        reading, now[0] = now[0], now[0] + stall[0]
        stall[0] = 0.0
        return reading

    dispatcher = Dispatcher(db.create_sessions(engine), publisher, DispatchPolicy(lease_seconds=10), clock=clock)
    try:
        async with jobs_clients(server.port) as clients:
            job = await create_job(clients.jobs)
            await clients.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w", attempt=0))
            connection = await databases.connect(own_database_url)
            try:
                await connection.execute(
                    "UPDATE jobs SET heartbeat_at = now() - interval '1 minute' WHERE id = $1", job.id
                )
            finally:
                await connection.close()
            for step in (0, 4, 4):  # rounds 4 s apart, not yet a lease
                now[0] += step
                await dispatcher.dispatch_once()
            now[0] += 4
            assert dispatcher.holds_a_lease(now[0])

            stall[0] = 3.0  # this round decides to reap; its candidates come back 3 s (over a quarter lease) later
            await dispatcher.dispatch_once()

            kept = await clients.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
            assert (kept.status, kept.retry_count) == (jobs_pb2.JOB_STATUS_PROCESSING, 0)
            assert not dispatcher.holds_a_lease(now[0])
            for step in (2, 4, 4):  # a lease after the stall, the silent worker's job is taken back
                now[0] += step
                await dispatcher.dispatch_once()
            reaped = await clients.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
            assert (reaped.status, reaped.retry_count) == (jobs_pb2.JOB_STATUS_QUEUED, 1)
    finally:
        await server.stop(0)
        await publisher.close()
        await engine.dispose()
        drop_keys(redis_url, prefix)
