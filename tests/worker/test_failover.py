"""Routing and failover end to end: two OpenAI-compatible providers and `local`, a real worker."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from collections.abc import Iterator

import pytest

from services.core.metrics import start_metrics_server
from tests.support.factories import create_job
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import Stack, StackFactory
from videogen.v1 import jobs_pb2, providers_pb2

KEY = "sk-failover-1a2b3c4d5e6f"
SORA = {"model": "sora-2", "durationSeconds": 4, "width": 1280, "height": 720}
HEALTH = {1: "healthy", 2: "degraded", 3: "unhealthy"}
# How old the health table a worker routes from may be (WORKER_ROUTING_TABLE_TTL).
TABLE_TTL = 0.2


@pytest.fixture
def servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    a, b = FakeOpenAI(api_key=KEY).start(), FakeOpenAI(api_key=KEY).start()
    yield a, b
    a.stop()
    b.stop()


def registry(a: FakeOpenAI, b: FakeOpenAI) -> dict[str, object]:
    def remote(name: str, server: FakeOpenAI, cost: float) -> dict[str, object]:
        return {
            "name": name,
            "kind": "openai-videos",
            "base_url": server.base_url,
            "api_key_env": "OPENAI_TEST_KEY",
            "models": ["sora-2"],
            "capabilities": {"sora-2": {"durations": [4, 8, 12], "aspect_ratios": ["16:9", "9:16"]}},
            "cost_per_request": cost,
            "poll_interval_seconds": 0.05,
            "timeout_seconds": 20,
        }

    return {
        "providers": [
            {"name": "local", "kind": "local", "models": ["local-pyav-h264-v1"]},
            remote("provider-a", a, 0.1),
            remote("provider-b", b, 0.2),
        ]
    }


async def health_of(stack: Stack, name: str) -> str:
    reply = await stack.providers.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())
    return HEALTH[next(p.status for p in reply.providers if p.provider == name)]


async def wait_health(stack: Stack, name: str, status: str, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while await health_of(stack, name) != status:
            await asyncio.sleep(0.1)


async def gauges(port: int) -> dict[str, float]:
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    return {m[0]: float(m[1]) for m in re.findall(r'provider_health_status\{provider="([^"]+)"\} ([0-9.]+)', body)}


async def test_traffic_moves_off_a_failing_provider_and_back_when_it_heals(
    start_stack: StackFactory, servers: tuple[FakeOpenAI, FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = servers
    monkeypatch.setenv("OPENAI_TEST_KEY", KEY)
    stack = await start_stack(
        registry=registry(a, b),
        providers={"provider_probe_interval": 0.3, "provider_unhealthy_after": 2, "provider_cooldown_seconds": 2},
        openai_test_key=KEY,
        worker_routing_table_ttl=TABLE_TTL,
    )
    metrics = start_metrics_server(host="127.0.0.1", port=0)
    try:
        first = await stack.wait_for((await create_job(stack.jobs, metadata=SORA)).id)
        assert (first.status, first.used_provider) == (jobs_pb2.JOB_STATUS_COMPLETED, "provider-a")
        assert (first.result.width, first.result.height) == (96, 64)  # what the file really holds

        a.failing = True
        during = [await stack.wait_for((await create_job(stack.jobs, metadata=SORA)).id) for _ in range(3)]
        await wait_health(stack, "provider-a", "unhealthy")

        assert [(j.status, j.used_provider, j.retry_count) for j in during] == [
            (jobs_pb2.JOB_STATUS_COMPLETED, "provider-b", 0)
        ] * 3
        assert (await gauges(metrics.port))["provider-a"] == 0.0
        assert (await gauges(metrics.port))["provider-b"] == 1.0
        after_unhealthy = await stack.wait_for((await create_job(stack.jobs, metadata=SORA)).id)
        assert after_unhealthy.used_provider == "provider-b"

        a.failing = False
        await wait_health(stack, "provider-a", "healthy")

        assert (await gauges(metrics.port))["provider-a"] == 1.0
        await asyncio.sleep(TABLE_TTL * 1.5)  # the worker routes from health at most a TTL old
        healed = await stack.wait_for((await create_job(stack.jobs, metadata=SORA)).id)
        assert (healed.status, healed.used_provider) == (jobs_pb2.JOB_STATUS_COMPLETED, "provider-a")
    finally:
        metrics.stop()
    assert KEY not in stack.worker.output()


async def test_a_named_unknown_provider_fails_the_job_with_a_clear_error(start_stack: StackFactory) -> None:
    stack = await start_stack()

    done = await stack.wait_for((await create_job(stack.jobs, metadata={"provider": "ghost"})).id)

    assert done.status == jobs_pb2.JOB_STATUS_FAILED
    assert done.retry_count == 0
    assert "ghost" in done.error_message and "not configured" in done.error_message
