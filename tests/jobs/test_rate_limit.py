"""The per-user creation limit: a token bucket in Redis, RESOURCE_EXHAUSTED, and 429 at the gateway."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest

from services.gateway.errors import grpc_error_response
from services.jobs.server import JobsServer, start_jobs_server
from tests.conftest import jobs_settings
from tests.support.brokers import drop_keys
from tests.support.factories import create_request, unique_user
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub as Stub


@pytest.fixture
async def limited(database_url: str, redis_url: str) -> AsyncIterator[Stub]:
    prefix = f"rate{uuid.uuid4().hex[:8]}-"
    settings = jobs_settings(celery_key_prefix=prefix, jobs_rate_limit_per_minute=6, jobs_rate_limit_burst=3)
    server: JobsServer = await start_jobs_server(
        settings, database_url=database_url, address="127.0.0.1:0", redis_url=redis_url
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield jobs_pb2_grpc.JobServiceStub(channel)
    finally:
        await server.stop(0)
        drop_keys(redis_url, prefix)


async def test_a_burst_passes_then_the_user_is_limited_and_nothing_is_stored(
    limited: Stub,
) -> None:
    user = unique_user()
    for _ in range(3):
        await limited.CreateJob(create_request(user_id=user))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await limited.CreateJob(create_request(user_id=user))

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 6 jobs per minute per user" in str(caught.value.details())
    assert (await limited.ListJobs(jobs_pb2.ListJobsRequest(user_id=user))).total == 3
    # Another user has a bucket of their own.
    await limited.CreateJob(create_request())

    response = grpc_error_response(caught.value, service="jobs")
    assert response.status_code == 429
    # One token comes back every 10 s at 6 per minute.
    assert 1 <= int(response.headers["Retry-After"]) <= 10
    body = json.loads(bytes(response.body))
    assert body["limit"] == "jobs_per_minute"
    assert body["retryAfterSeconds"] == int(response.headers["Retry-After"])


async def test_redis_down_lets_jobs_through(database_url: str) -> None:
    settings = jobs_settings(jobs_rate_limit_per_minute=1, jobs_rate_limit_burst=1)
    server = await start_jobs_server(
        settings, database_url=database_url, address="127.0.0.1:0", redis_url="redis://127.0.0.1:1/0"
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            jobs: Stub = jobs_pb2_grpc.JobServiceStub(channel)
            user = unique_user()
            for _ in range(3):
                await jobs.CreateJob(create_request(user_id=user))
    finally:
        await server.stop(0)
