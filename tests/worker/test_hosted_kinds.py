"""The fal and replicate kinds end to end: the real worker against each kind's fake."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import av
import pytest

from tests.support.factories import create_job
from tests.support.fake_fal import FakeFal
from tests.support.fake_replicate import FakeReplicate
from tests.support.stack import Stack, StackFactory
from videogen.v1 import jobs_pb2

FAL_KEY = "fal-e2e:3b9d2f7a1c5e8b4d"
REPLICATE_KEY = "r8_e2eQ4nV8sK2pJ6wR1tY5u"
# Runs on either kind's model: 8 s at 16:9 (Veo 3.1 on both).
METADATA = {"durationSeconds": 8, "aspectRatio": "16:9"}


@pytest.fixture
def fal() -> Iterator[FakeFal]:
    server = FakeFal(key=FAL_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def replicate() -> Iterator[FakeReplicate]:
    server = FakeReplicate(key=REPLICATE_KEY)
    server.start()
    yield server
    server.stop()


def entry(name: str, base_url: str, key_env: str, model: str) -> dict[str, Any]:
    return {
        "providers": [
            {
                "name": name,
                "kind": name,
                "base_url": base_url,
                "api_key_env": key_env,
                "models": [model],
                "poll_interval_seconds": 0.05,
                "timeout_seconds": 30,
            }
        ]
    }


async def start_fal(start_stack: StackFactory, fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("FAL_E2E_KEY", FAL_KEY)
    return await start_stack(registry=entry("fal", fal.base_url, "FAL_E2E_KEY", "fal-ai/veo3.1"), fal_e2e_key=FAL_KEY)


async def start_replicate(
    start_stack: StackFactory, replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    monkeypatch.setenv("REPLICATE_E2E_TOKEN", REPLICATE_KEY)
    registry = entry("replicate", replicate.api_url, "REPLICATE_E2E_TOKEN", "google/veo-3.1")
    return await start_stack(registry=registry, replicate_e2e_token=REPLICATE_KEY)


async def assert_completed_and_stored(stack: Stack, provider: str, model: str, key: str) -> None:
    done = await stack.wait_for((await create_job(stack.jobs, metadata=METADATA)).id)

    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED, done.error_message
    assert (done.used_provider, done.used_model) == (provider, model)
    assert done.cost_usd == pytest.approx(0.40 * 8)
    path = stack.media / done.result.storage_key
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) > 0
    assert (done.result.width, done.result.height) == (96, 64)
    assert key not in stack.worker.output()


async def assert_cancel_reaches_the_provider(stack: Stack, cancelled: Callable[[], bool]) -> None:
    job = await create_job(stack.jobs, metadata=METADATA)
    await stack.wait_for(job.id, lambda j: j.status == jobs_pb2.JOB_STATUS_PROCESSING and j.progress_stage != "")
    await stack.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))

    async with asyncio.timeout(5):
        while not cancelled():
            await asyncio.sleep(0.05)
    assert (await stack.wait_for(job.id)).status == jobs_pb2.JOB_STATUS_CANCELLED


async def test_a_fal_job_completes_with_its_video_stored_by_us(
    start_stack: StackFactory, fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = await start_fal(start_stack, fal, monkeypatch)

    await assert_completed_and_stored(stack, "fal", "fal-ai/veo3.1", FAL_KEY)

    assert fal.submitted()[0].input["duration"] == "8s"


async def test_cancelling_a_fal_job_cancels_its_request(
    start_stack: StackFactory, fal: FakeFal, monkeypatch: pytest.MonkeyPatch
) -> None:
    fal.hold = True
    stack = await start_fal(start_stack, fal, monkeypatch)

    await assert_cancel_reaches_the_provider(stack, lambda: any(r.cancelled for r in fal.submitted()))


async def test_a_replicate_job_completes_with_its_video_stored_by_us(
    start_stack: StackFactory, replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = await start_replicate(start_stack, replicate, monkeypatch)

    await assert_completed_and_stored(stack, "replicate", "google/veo-3.1", REPLICATE_KEY)

    assert replicate.created()[0].input["duration"] == 8


async def test_cancelling_a_replicate_job_cancels_its_prediction(
    start_stack: StackFactory, replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch
) -> None:
    replicate.hold = True
    stack = await start_replicate(start_stack, replicate, monkeypatch)

    await assert_cancel_reaches_the_provider(stack, lambda: any(p.cancelled for p in replicate.created()))
