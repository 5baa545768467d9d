"""Fixtures: one fresh, migrated database per run, and jobs services on free ports."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core import migrate
from services.core.tasks import broker_url
from services.jobs.server import JobsServer, start_jobs_server
from services.jobs.settings import JobsSettings
from tests.support import brokers, databases
from tests.support.internal import internal_channel
from videogen.v1 import jobs_pb2_grpc, lifecycle_pb2_grpc

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database created for this run, migrated to head, dropped at the end."""
    url = asyncio.run(databases.create_database(databases.server_url()))
    asyncio.run(migrate.upgrade(url))
    yield url
    asyncio.run(databases.drop_database(url))


@pytest.fixture(scope="session")
def template_database_url() -> Iterator[str]:
    """A migrated database nothing connects to, so that copies of it are quick to make."""
    url = asyncio.run(databases.create_database(databases.server_url()))
    asyncio.run(migrate.upgrade(url))
    yield url
    asyncio.run(databases.drop_database(url))


@pytest.fixture
async def own_database_url(template_database_url: str) -> AsyncIterator[str]:
    """A fresh migrated database for one test, for tests whose dispatcher would see other tests' jobs."""
    url = await databases.create_database(template_database_url, template=template_database_url)
    yield url
    await databases.drop_database(url)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis of this run (REDIS_URL or an embedded one)."""
    return brokers.redis_server_url()


def jobs_settings(**overrides: Any) -> JobsSettings:
    """Settings for a service under test: quick health checks, no .env file."""
    values: dict[str, Any] = {
        "health_check_interval": 0.2,
        "db_connect_timeout": 1.0,
        "shutdown_grace": 1.0,
        "media_dir": Path(tempfile.gettempdir()) / "videogen-test-media",
    }
    values.update(overrides)
    return JobsSettings(_env_file=None, **values)


async def start_brokered_jobs(settings: JobsSettings, *, database_url: str, redis_url: str) -> JobsServer:
    """A jobs service on a free port that publishes on Redis's Celery queues (its dispatcher runs)."""
    return await start_jobs_server(
        settings,
        database_url=database_url,
        address="127.0.0.1:0",
        broker=broker_url(settings, redis_url),
        redis_url=redis_url,
    )


async def wait_serving(channel: grpc.aio.Channel, service: str = "", timeout: float = 10) -> None:
    """Waits until the server's health says SERVING for service."""
    health = health_pb2_grpc.HealthStub(channel)
    async with asyncio.timeout(timeout):
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)


@pytest.fixture
async def jobs_server(database_url: str) -> AsyncIterator[JobsServer]:
    """A jobs service on a free port, SERVING."""
    server = await start_jobs_server(jobs_settings(), database_url=database_url, address="127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await wait_serving(channel)
    yield server
    await server.stop(0)


@pytest.fixture
async def channel(jobs_server: JobsServer) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the jobs service."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{jobs_server.port}") as chan:
        yield chan


@pytest.fixture
def jobs(channel: grpc.aio.Channel) -> JobServiceAsyncStub:
    """A JobService client."""
    return jobs_pb2_grpc.JobServiceStub(channel)


@pytest.fixture
async def lifecycle(jobs_server: JobsServer) -> AsyncIterator[JobLifecycleServiceAsyncStub]:
    """A JobLifecycleService client with the service credential, as the worker's."""
    async with internal_channel(f"127.0.0.1:{jobs_server.port}") as chan:
        yield lifecycle_pb2_grpc.JobLifecycleServiceStub(chan)


# Fixtures of a running stack (jobs, providers, worker) and of moto's S3 server, for every test package.
pytest_plugins = ["tests.support.stack", "tests.support.s3"]
SLOW_TEST_SECONDS = 120


@pytest.fixture(autouse=True)
async def _dump_tasks_of_a_slow_test() -> AsyncIterator[None]:
    """Prints every asyncio task's stack when a test runs past SLOW_TEST_SECONDS: a hung await
    shows where it waits (pytest-timeout's dump shows threads, not coroutines)."""

    async def dump() -> None:
        await asyncio.sleep(SLOW_TEST_SECONDS)
        for task in asyncio.all_tasks():
            sys.stderr.write(f"--- {task!r}\n")
            task.print_stack(file=sys.stderr)

    watchdog = asyncio.create_task(dump())
    yield
    watchdog.cancel()
