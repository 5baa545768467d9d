"""An openai-compatible provider (a vLLM-Omni-like fake) end to end, through the real worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import av
import pytest

from tests.support.factories import create_job
from tests.support.fake_openai import FakeOpenAI
from tests.support.stack import StackFactory
from videogen.v1 import jobs_pb2

KEY = "sk-vllm-e2e-7c6b5a4d3e2f"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY).start()
    yield fake
    fake.stop()


def registry(server: FakeOpenAI) -> dict[str, object]:
    return {
        "providers": [
            {
                "name": "vllm",
                "kind": "openai-compatible",
                "dialect": "vllm-omni",
                "base_url": server.base_url,
                "api_key_env": "VLLM_E2E_KEY",
                "models": ["wan2.2"],
                "capabilities": {"wan2.2": {"min_seconds": 1, "max_seconds": 10, "price_per_second": 0.05}},
                "poll_interval_seconds": 0.05,
                "timeout_seconds": 30,
            }
        ]
    }


async def test_a_job_is_made_on_the_server_stored_by_us_and_priced(
    start_stack: StackFactory, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_E2E_KEY", KEY)
    stack = await start_stack(registry=registry(server), vllm_e2e_key=KEY)

    job = await create_job(stack.jobs, metadata={"durationSeconds": 2, "aspectRatio": "16:9", "fps": 16})
    done = await stack.wait_for(job.id)

    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED, done.error_message
    assert (done.used_provider, done.used_model) == ("vllm", "wan2.2")
    assert done.cost_usd == pytest.approx(0.1)  # 2 s at $0.05
    assert (server.created[0]["num_frames"], server.created[0]["size"]) == ("32", "1280x720")
    with av.open(str(stack.media / done.result.storage_key)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert (frames, done.result.width, done.result.height, done.result.codec) == (8, 96, 64, "h264")
    assert KEY not in stack.worker.output()


async def test_cancelling_the_processing_job_deletes_the_remote_video_within_5s(
    start_stack: StackFactory, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VLLM_E2E_KEY", KEY)
    server.steps = [10] * 100_000  # in progress for as long as the test lasts
    stack = await start_stack(registry=registry(server), vllm_e2e_key=KEY)
    job = await create_job(stack.jobs, metadata={"durationSeconds": 2})
    await stack.wait_for(job.id, lambda j: j.progress_stage == "generating")

    cancelled_at = time.monotonic()
    await stack.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    async with asyncio.timeout(5):
        while server.deleted != ["video_1"]:
            await asyncio.sleep(0.05)

    assert time.monotonic() - cancelled_at < 5
    await stack.event("job.attempt_finished", 5, job_id=job.id, outcome="cancelled")
    assert [p.name for p in stack.media.rglob("*") if p.is_file()] == []
