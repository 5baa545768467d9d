"""Publishing on Celery: after commit, again when the broker was down, after backoff, and ageing."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import redis
from sqlalchemy import make_url

from services.core.tasks import broker_url
from services.jobs.server import JobsServer, start_jobs_server
from tests.conftest import jobs_settings
from tests.support.brokers import drop_keys
from tests.support.factories import create_job
from tests.support.internal import JobsClients, jobs_clients
from tests.support.tcp_proxy import TcpProxy
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, lifecycle_pb2

if TYPE_CHECKING:
    pass


class Broker:
    """Reads the Celery messages a jobs service published under its own key prefix."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix

    def depth(self, queue: str) -> int:
        return int(self.client.llen(f"{self.prefix}{queue}"))

    def messages(self, queue: str) -> list[dict[str, Any]]:
        raw = self.client.lrange(f"{self.prefix}{queue}", 0, -1)
        return [json.loads(base64.b64decode(json.loads(item)["body"]))[1] for item in raw]

    async def wait_depth(self, queue: str, depth: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while self.depth(queue) != depth:
                await asyncio.sleep(0.05)


async def start(database_url: str, broker: str, prefix: str, **settings: Any) -> JobsServer:
    values = {"celery_key_prefix": prefix, "dispatch_interval": 0.1, **settings}
    return await start_jobs_server(
        jobs_settings(**values), database_url=database_url, address="127.0.0.1:0", broker=broker
    )


async def redis_proxy(redis_url: str) -> tuple[TcpProxy, str]:
    """A started TcpProxy in front of the Redis of redis_url (TCP or unix socket), and its URL."""
    parsed = make_url(redis_url) if redis_url.startswith("redis://") else None
    if parsed is None:
        upstream = lambda: asyncio.open_unix_connection(redis_url.removeprefix("unix://").split("?")[0])  # noqa: E731
        db_index = "0"
    else:
        upstream = lambda: asyncio.open_connection(parsed.host or "127.0.0.1", parsed.port or 6379)  # noqa: E731
        db_index = parsed.database or "0"
    proxy = TcpProxy(upstream)
    await proxy.start()
    return proxy, f"redis://127.0.0.1:{proxy.port}/{db_index}"


@pytest.fixture
async def stack(own_database_url: str, redis_url: str) -> AsyncIterator[tuple[JobsClients, Broker, JobsServer]]:
    prefix = f"d{uuid.uuid4().hex[:10]}-"
    server = await start(own_database_url, broker_url(jobs_settings(), redis_url), prefix, priority_aging_seconds=3600)
    async with jobs_clients(server.port) as clients:
        yield clients, Broker(redis_url, prefix), server
    await server.stop(0)
    drop_keys(redis_url, prefix)


async def test_create_publishes_one_message_on_the_queue_of_its_priority(
    stack: tuple[JobsClients, Broker, JobsServer],
) -> None:
    clients, broker, _ = stack
    jobs = clients.jobs

    job = await create_job(jobs, metadata={"priority": "high"})

    [message] = broker.messages("high_priority")
    assert (message["job_id"], message["attempt"]) == (job.id, 0)
    assert message["request_id"]
    assert broker.depth("default") == broker.depth("low_priority") == 0


async def test_retry_is_published_only_after_its_backoff_for_the_next_attempt(
    stack: tuple[JobsClients, Broker, JobsServer],
) -> None:
    clients, broker, _ = stack
    jobs, lifecycle = clients.jobs, clients.lifecycle
    job = await create_job(jobs)
    broker.client.delete(f"{broker.prefix}default")
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w", attempt=0))

    await lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="flaky", retry_after_seconds=1.0))
    await asyncio.sleep(0.5)
    assert broker.depth("default") == 0

    await broker.wait_depth("default", 1)
    assert broker.messages("default")[0]["attempt"] == 1


async def test_a_message_for_an_older_attempt_never_starts_the_job(
    stack: tuple[JobsClients, Broker, JobsServer],
) -> None:
    clients, _, _ = stack
    jobs, lifecycle = clients.jobs, clients.lifecycle
    job = await create_job(jobs)
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w", attempt=0))
    await lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="flaky"))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w", attempt=0))

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    started = await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w", attempt=1))
    assert started.status == jobs_pb2.JOB_STATUS_PROCESSING


async def test_job_created_while_the_broker_is_down_is_published_when_it_returns(
    own_database_url: str, redis_url: str
) -> None:
    proxy, proxied = await redis_proxy(redis_url)
    prefix = f"d{uuid.uuid4().hex[:10]}-"
    server = await start(own_database_url, proxied, prefix)
    broker = Broker(redis_url, prefix)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            await proxy.cut()

            job = await create_job(jobs)

            assert job.status == jobs_pb2.JOB_STATUS_QUEUED
            await asyncio.sleep(0.5)  # several dispatcher rounds fail against the cut broker
            assert broker.depth("default") == 0
            await proxy.start()
            await broker.wait_depth("default", 1, timeout=30)
            assert broker.messages("default")[0]["job_id"] == job.id
    finally:
        await server.stop(0)
        await proxy.cut()
        drop_keys(redis_url, prefix)


async def test_a_low_job_waiting_too_long_is_promoted(own_database_url: str, redis_url: str) -> None:
    prefix = f"d{uuid.uuid4().hex[:10]}-"
    server = await start(own_database_url, broker_url(jobs_settings(), redis_url), prefix, priority_aging_seconds=0.5)
    broker = Broker(redis_url, prefix)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            job = await create_job(jobs_pb2_grpc.JobServiceStub(channel), metadata={"priority": "low"})

            await broker.wait_depth("default", 1)
            await broker.wait_depth("high_priority", 1)

            assert [m["job_id"] for m in broker.messages("low_priority")] == [job.id]
            assert [m["attempt"] for m in broker.messages("high_priority")] == [0]
    finally:
        await server.stop(0)
        drop_keys(redis_url, prefix)


async def test_a_create_whose_client_gives_up_after_the_commit_still_gets_its_message(
    own_database_url: str, redis_url: str
) -> None:
    proxy, proxied = await redis_proxy(redis_url)
    prefix = f"d{uuid.uuid4().hex[:10]}-"
    # No orphan sweep to fall back on: only the create's own publish (or its release) can send it.
    server = await start(own_database_url, proxied, prefix, orphan_sweep_after_seconds=3600)
    broker = Broker(redis_url, prefix)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            proxy.blackhole = True  # the broker stops answering: the publish hangs until its timeout
            with pytest.raises(grpc.aio.AioRpcError) as gave_up:
                await jobs.CreateJob(
                    jobs_pb2.CreateJobRequest(user_id="u", prompt="p", metadata_json="{}"), timeout=0.5
                )
            assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            listed = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id="u"))
            assert [job.status for job in listed.jobs] == [jobs_pb2.JOB_STATUS_QUEUED]  # committed
            proxy.blackhole = False

            await broker.wait_depth("default", 1, timeout=20)
            assert [m["job_id"] for m in broker.messages("default")] == [listed.jobs[0].id]
    finally:
        await server.stop(0)
        await proxy.cut()
        drop_keys(redis_url, prefix)
