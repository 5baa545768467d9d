"""Health follows the database without a restart; reflection and per-method metrics are served."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.core.grpc_server import LIVENESS
from services.core.metrics import start_metrics_server
from services.jobs.server import SERVICE_NAME, JobsServer, start_jobs_server
from tests.conftest import jobs_settings, wait_serving
from tests.support import databases
from tests.support.factories import create_request
from tests.support.tcp_proxy import TcpProxy
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    """A cuttable path to the test database."""
    tcp = TcpProxy(databases.upstream_of(database_url))
    await tcp.start()
    yield tcp
    await tcp.cut()


@pytest.fixture
async def proxied_server(proxy: TcpProxy, database_url: str) -> AsyncIterator[JobsServer]:
    """A jobs service that reaches its database through the proxy."""
    url = databases.through_proxy(database_url, proxy.port)
    server = await start_jobs_server(jobs_settings(), database_url=url, address="127.0.0.1:0")
    yield server
    await server.stop(0)


async def health_of(channel: grpc.aio.Channel, service: str) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def wait_status(channel: grpc.aio.Channel, service: str, status: int, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while await health_of(channel, service) != status:
            await asyncio.sleep(0.05)


async def test_health_serves_for_the_empty_name_and_the_service_name(channel: grpc.aio.Channel) -> None:
    assert await health_of(channel, "") == SERVING
    assert await health_of(channel, SERVICE_NAME) == SERVING


async def test_health_of_an_unknown_service_is_not_found(channel: grpc.aio.Channel) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await health_of(channel, "videogen.v1.NoSuchService")

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_follows_the_database_down_and_back_without_restart(
    proxy: TcpProxy, proxied_server: JobsServer
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{proxied_server.port}") as channel:
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        await wait_serving(channel, SERVICE_NAME)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert (await watch.read()).status == SERVING

        await proxy.cut()

        assert (await asyncio.wait_for(watch.read(), 10)).status == NOT_SERVING
        assert await health_of(channel, "") == NOT_SERVING
        # Liveness never follows the database: a Kubernetes liveness probe must not restart us.
        assert await health_of(channel, LIVENESS) == SERVING
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await jobs.CreateJob(create_request(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        await proxy.start()

        assert (await asyncio.wait_for(watch.read(), 10)).status == SERVING
        job = await jobs.CreateJob(create_request(), timeout=10)
        assert job.status == jobs_pb2.JOB_STATUS_QUEUED
        watch.cancel()


async def test_service_started_while_the_database_is_down_serves_once_it_answers(
    proxy: TcpProxy, database_url: str
) -> None:
    await proxy.cut()
    url = databases.through_proxy(database_url, proxy.port)
    server = await start_jobs_server(jobs_settings(), database_url=url, address="127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            await asyncio.sleep(0.5)
            assert await health_of(channel, SERVICE_NAME) == NOT_SERVING
            assert await health_of(channel, LIVENESS) == SERVING

            await proxy.start()

            await wait_status(channel, SERVICE_NAME, SERVING)
    finally:
        await server.stop(0)


async def test_reflection_lists_the_job_service(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    replies = [reply async for reply in stub.ServerReflectionInfo(ask())]

    names = {service.name for service in replies[0].list_services_response.service}
    assert {"videogen.v1.JobService", "grpc.health.v1.Health"} <= names


async def test_metrics_count_and_time_each_method(jobs: JobServiceAsyncStub) -> None:
    metrics = start_metrics_server(host="127.0.0.1", port=0)
    try:
        await jobs.CreateJob(create_request())
        with pytest.raises(grpc.aio.AioRpcError):
            await jobs.GetJob(jobs_pb2.GetJobRequest(id="cnotthereatall0000000000a"))

        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics").read().decode()
        )
    finally:
        metrics.stop()

    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="CreateJob",grpc_service="videogen.v1.JobService"}'
        in body
    )
    assert 'grpc_code="NOT_FOUND",grpc_method="GetJob"' in body
    assert 'grpc_server_handling_seconds_count{grpc_method="CreateJob",grpc_service="videogen.v1.JobService"}' in body
