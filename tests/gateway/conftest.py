"""The REST gateway served by uvicorn in this process, in front of a running stack."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
import uvicorn

from services.edge import envoy_command, render_local
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.support.processes import free_port
from tests.support.stack import Stack, StackFactory
from videogen.v1 import jobs_pb2


@dataclass
class Gateway:
    """A gateway behind a real Envoy edge, and the stack behind both; client talks to the edge."""

    client: httpx.AsyncClient
    stack: Stack
    port: int
    edge_port: int


GatewayFactory = Callable[..., Awaitable[Gateway]]
# Real-looking production secrets (services refuse short or placeholder ones).
ADMIN_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90-admin"
SECRET_KEY = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f-secret"


def production(**gateway: Any) -> dict[str, Any]:
    """start_gateway's keywords for a whole system in production: every service with the same
    SECRET_KEY, the jobs and providers services with API_KEY, the worker with its credential."""
    secrets = {"app_env": "production", "secret_key": SECRET_KEY}
    keyed = {**secrets, "api_key": ADMIN_KEY}
    stack = {"jobs": keyed, "providers": keyed, **secrets}
    return {"stack_options": stack, **secrets, **gateway}


async def start_edge(stack: Stack, gateway_port: int) -> tuple[subprocess.Popen[bytes], int]:
    """Envoy in front of the stack, serving /health; new ports when another process took one of
    the free ports it was given before Envoy could bind it."""
    for attempt in range(3):
        edge_port = free_port()
        config = render_local(
            edge_port=edge_port,
            admin_port=free_port(),
            metrics_port=free_port(),
            upstreams={
                "gateway": [("127.0.0.1", gateway_port)],
                "jobs": [("127.0.0.1", stack.server.port)],
                "providers": [("127.0.0.1", stack.providers_server.port)],
            },
            out=stack.workdir / "envoy.yaml",
        )
        with (stack.workdir / f"envoy-{attempt}.log").open("wb") as log:
            edge = subprocess.Popen(envoy_command(config), stdout=log, stderr=subprocess.STDOUT)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}", timeout=5) as client:
            async with asyncio.timeout(30):
                while edge.poll() is None:
                    try:
                        if (await client.get("/health")).status_code == 200:
                            return edge, edge_port
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
        edge.kill()
        edge.wait()
    raise RuntimeError(f"envoy did not start: see {stack.workdir}/envoy-*.log")


class GatewayRunner:
    """Starts gateways, each behind its own Envoy and in front of a stack that start_stack
    starts, and stops every one it started."""

    def __init__(self, start_stack: StackFactory, redis_url: str) -> None:
        self._start_stack, self._redis_url = start_stack, redis_url
        self._servers: list[tuple[uvicorn.Server, asyncio.Task[None], httpx.AsyncClient]] = []
        self._edges: list[subprocess.Popen[bytes]] = []

    async def start(self, stack_options: dict[str, Any] | None = None, **overrides: Any) -> Gateway:
        """A stack (with start_stack's stack_options) and a gateway before it, with gateway
        settings overridden by keyword."""
        stack = await self._start_stack(**(stack_options or {}))
        values: dict[str, Any] = {
            "jobs_target": f"127.0.0.1:{stack.server.port}",
            "providers_target": f"127.0.0.1:{stack.providers_server.port}",
            "worker_target": f"127.0.0.1:{stack.worker_port}",
            "media_dir": stack.media,
            "gateway_readiness_timeout": 1.0,
            **overrides,
        }
        app = create_app(GatewaySettings(_env_file=None, **values), redis_url=self._redis_url)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
        task = asyncio.create_task(server.serve())
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        edge, edge_port = await start_edge(stack, port)
        self._edges.append(edge)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}", timeout=30)
        self._servers.append((server, task, client))
        return Gateway(client=client, stack=stack, port=port, edge_port=edge_port)

    async def close(self) -> None:
        """Stops the edges, then the gateways (the stacks are start_stack's to stop)."""
        for edge in self._edges:
            edge.terminate()
            edge.wait(10)
        for server, task, client in self._servers:
            await client.aclose()
            server.should_exit = True
            await task


@pytest.fixture
async def start_gateway(start_stack: StackFactory, redis_url: str) -> AsyncIterator[GatewayFactory]:
    """Starts gateways (see GatewayRunner.start) with stacks of this test's own."""
    runner = GatewayRunner(start_stack, redis_url)
    yield runner.start
    await runner.close()


@pytest.fixture(scope="module")
async def start_module_gateway(start_module_stack: StackFactory, redis_url: str) -> AsyncIterator[GatewayFactory]:
    """Starts gateways (see GatewayRunner.start) that live until the module's last test."""
    runner = GatewayRunner(start_module_stack, redis_url)
    yield runner.start
    await runner.close()


@pytest.fixture(scope="module")
async def module_gateway(start_module_gateway: GatewayFactory) -> Gateway:
    """A development-mode gateway that the module's tests share (each with its own users)."""
    return await start_module_gateway()


@pytest.fixture
async def gateway(module_gateway: Gateway) -> AsyncIterator[Gateway]:
    """The module's shared development-mode gateway; after the test, the jobs it left unfinished
    are cancelled, so that the next test finds the worker idle as on a fresh stack."""
    yield module_gateway
    await cancel_unfinished(module_gateway.stack)


async def cancel_unfinished(stack: Stack, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    """Cancels every queued or processing job of the stack (a cancelled render stops at its next
    progress report); metadata carries the admin key of a production stack."""
    for _ in range(20):  # pages of 100: bounded, so that a job that cannot be cancelled fails the test
        unfinished = [
            job
            for status in (jobs_pb2.JOB_STATUS_QUEUED, jobs_pb2.JOB_STATUS_PROCESSING)
            for job in (
                await stack.jobs.ListJobs(jobs_pb2.ListJobsRequest(status=status, take=100), metadata=metadata)
            ).jobs
        ]
        if not unfinished:
            return
        for job in unfinished:
            with contextlib.suppress(grpc.aio.AioRpcError):  # it finished meanwhile
                await stack.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id), metadata=metadata)
    raise AssertionError("jobs of the shared stack stayed unfinished")
