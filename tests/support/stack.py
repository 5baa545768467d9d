"""Fixtures of a running stack: jobs and providers services in this process, the real worker process."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from services.core.generators.registry import load_registry
from services.jobs.server import JobsServer
from services.providers.server import ProvidersServer, start_providers_server
from services.providers.settings import ProvidersSettings
from tests.conftest import jobs_settings, start_brokered_jobs, wait_serving
from tests.support import databases
from tests.support.brokers import drop_keys
from tests.support.processes import ROOT, ServiceProcess, clean_env
from tests.support.tcp_proxy import TcpProxy
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, providers_pb2_grpc

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.providers_pb2_grpc import ProviderServiceAsyncStub

# The registry of a stack unless a test brings its own: the built-in renderer and the scripted double.
DEFAULT_REGISTRY = {
    "providers": [
        {"name": "local", "kind": "local", "models": ["local-pyav-h264-v1"]},
        {
            "name": "scripted",
            "kind": "plugin",
            "plugin": "tests.support.scripted_provider:ScriptedProvider",
            "cost_per_request": 1.0,
        },
    ]
}


def providers_settings(**overrides: Any) -> ProvidersSettings:
    """A providers service that probes often and judges quickly."""
    values: dict[str, Any] = {
        "health_check_interval": 0.2,
        "provider_probe_interval": 0.3,
        "provider_probe_timeout": 2.0,
        "provider_unhealthy_after": 2,
        "provider_cooldown_seconds": 2.0,
        **overrides,
    }
    return ProvidersSettings(_env_file=None, **values)


FINAL = {jobs_pb2.JOB_STATUS_COMPLETED, jobs_pb2.JOB_STATUS_FAILED, jobs_pb2.JOB_STATUS_CANCELLED}


@dataclass
class Stack:
    """A running jobs service, providers service and worker."""

    jobs: JobServiceAsyncStub
    providers: ProviderServiceAsyncStub
    providers_server: ProvidersServer
    server: JobsServer
    worker: ServiceProcess
    worker_port: int
    metrics_port: int
    media: Path
    workdir: Path
    # The path from the worker to the jobs service, when the test asked to cut it (jobs_proxy).
    jobs_proxy: TcpProxy | None = None

    async def event(self, event: str, timeout: float = 30, **fields: Any) -> dict[str, Any]:
        """Waits for a worker log event without blocking the jobs service in this loop."""
        return await asyncio.to_thread(self.worker.wait_event, event, timeout, **fields)

    async def wait_for(
        self, job_id: str, done: Callable[[jobs_pb2.Job], bool] = lambda j: j.status in FINAL, timeout: float = 60
    ) -> jobs_pb2.Job:
        """Polls the job until done(job) holds."""
        async with asyncio.timeout(timeout):
            while True:
                job: jobs_pb2.Job = await self.jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))
                if done(job):
                    return job
                await asyncio.sleep(0.05)


StackFactory = Callable[..., Awaitable[Stack]]


class StackRunner:
    """Starts stacks on one database and working directory, and stops every one it started."""

    def __init__(self, *, database_url: str, redis_url: str, workdir: Path) -> None:
        self.database_url, self.redis_url, self.workdir = database_url, redis_url, workdir
        self.prefix = f"t{uuid.uuid4().hex[:10]}-"
        self._started: list[tuple[JobsServer, ServiceProcess, grpc.aio.Channel]] = []
        self._proxies: list[TcpProxy] = []
        self._provider_servers: list[ProvidersServer] = []
        self._channels: list[grpc.aio.Channel] = []

    async def start(
        self,
        registry: dict[str, Any] | None = None,
        providers: dict[str, Any] | None = None,
        jobs: dict[str, Any] | None = None,
        jobs_proxy: bool = False,
        **worker_env: Any,
    ) -> Stack:
        """A stack with worker settings overridden by keyword (jobs settings by `jobs`); with
        jobs_proxy, the worker reaches the jobs service through a TcpProxy the test can cut."""
        workdir, prefix = self.workdir, self.prefix
        settings = jobs_settings(
            celery_key_prefix=prefix, dispatch_interval=0.2, media_dir=workdir / "media", **(jobs or {})
        )
        server = await start_brokered_jobs(settings, database_url=self.database_url, redis_url=self.redis_url)
        proxy = await _proxy_to(server.port, self._proxies) if jobs_proxy else None
        config = workdir / "providers.json"
        config.write_text(json.dumps(registry or DEFAULT_REGISTRY))
        providers_server = await start_providers_server(
            providers_settings(**(providers or {})),
            database_url=self.database_url,
            address="127.0.0.1:0",
            registry=load_registry(config),
        )
        self._provider_servers.append(providers_server)
        worker = ServiceProcess(
            "services.worker", self._worker_env(server, proxy, providers_server, worker_env), cwd=workdir
        )
        serving = worker.wait_event("worker.serving", timeout=60)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        self._started.append((server, worker, channel))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{serving['grpc_port']}") as worker_channel:
            await wait_serving(worker_channel, "videogen.v1.WorkerService", timeout=30)
        self._channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{providers_server.port}"))
        return Stack(
            jobs=jobs_pb2_grpc.JobServiceStub(channel),
            providers=providers_pb2_grpc.ProviderServiceStub(self._channels[-1]),
            providers_server=providers_server,
            server=server,
            worker=worker,
            worker_port=serving["grpc_port"],
            metrics_port=serving["metrics_port"],
            media=workdir / "media",
            workdir=workdir,
            jobs_proxy=proxy,
        )

    def _worker_env(
        self, server: JobsServer, proxy: TcpProxy | None, providers: ProvidersServer, overrides: dict[str, Any]
    ) -> dict[str, str]:
        """The worker's environment: the stack's services, quick intervals, then overrides."""
        return clean_env(
            JOBS_TARGET=f"127.0.0.1:{proxy.port if proxy else server.port}",
            PROVIDERS_TARGET=f"127.0.0.1:{providers.port}",
            PROVIDERS_CONFIG=str(self.workdir / "providers.json"),
            REDIS_URL=self.redis_url,
            CELERY_KEY_PREFIX=self.prefix,
            DATA_DIR=str(self.workdir / "data"),
            MEDIA_DIR=str(self.workdir / "media"),
            WORKER_GRPC_PORT="0",
            WORKER_METRICS_PORT="0",
            GRPC_BIND_HOST="127.0.0.1",
            METRICS_BIND_HOST="127.0.0.1",
            HEALTH_CHECK_INTERVAL="0.2",
            WORKER_PROGRESS_INTERVAL="0.1",
            WORKER_STATS_TIMEOUT="0.5",
            SHUTDOWN_GRACE="5",
            PYTHONPATH=str(ROOT),
            **{key.upper(): str(value) for key, value in overrides.items()},
        )

    async def close(self) -> None:
        """Stops every stack started, in order: workers and jobs services, proxies, providers."""
        for server, worker, channel in self._started:
            worker.stop()
            await channel.close(None)
            await server.stop(0)
        for cut in self._proxies:
            await cut.cut()
        for providers in self._provider_servers:
            await providers.stop(0)
        for extra in self._channels:
            await extra.close(None)
        drop_keys(self.redis_url, self.prefix)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vg-w-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def start_stack(own_database_url: str, redis_url: str, workdir: Path) -> AsyncIterator[StackFactory]:
    """Starts stacks for one test (see StackRunner.start), on the test's own database."""
    runner = StackRunner(database_url=own_database_url, redis_url=redis_url, workdir=workdir)
    yield runner.start
    await runner.close()


@pytest.fixture(scope="module")
async def start_module_stack(template_database_url: str, redis_url: str) -> AsyncIterator[StackFactory]:
    """Starts stacks (see StackRunner.start) that live until the module's last test, each on a
    database, working directory and queues of its own: for tests that share a stack, each test
    with users and data of its own."""
    runners: list[StackRunner] = []

    async def start(**options: Any) -> Stack:
        url = await databases.create_database(template_database_url, template=template_database_url)
        workdir = Path(tempfile.mkdtemp(prefix="vg-m-"))
        runners.append(StackRunner(database_url=url, redis_url=redis_url, workdir=workdir))
        return await runners[-1].start(**options)

    yield start
    for runner in runners:
        await runner.close()
        await databases.drop_database(runner.database_url)
        shutil.rmtree(runner.workdir, ignore_errors=True)


async def _proxy_to(port: int, proxies: list[TcpProxy]) -> TcpProxy:
    """A started TcpProxy to 127.0.0.1:port, noted in proxies to be cut at the end."""
    proxy = TcpProxy(lambda: asyncio.open_connection("127.0.0.1", port))
    await proxy.start()
    proxies.append(proxy)
    return proxy
