"""The runway kind end to end: the real worker process against a fake of Runway's API."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from typing import Any

import av
import pytest

from tests.support.factories import create_job
from tests.support.fake_runway import FakeRunway
from tests.support.stack import StackFactory
from videogen.v1 import jobs_pb2

KEY = "key_runway_e2e_4b3a2c1d0e"
# gen4.5 makes 5 s for $0.60; veo3.1 would make 6 s for $1.20: routing takes gen4.5.
VIDEO = {"durationSeconds": 5, "aspectRatio": "16:9"}


@pytest.fixture
def fake() -> Iterator[FakeRunway]:
    server = FakeRunway(api_key=KEY)
    server.start()
    yield server
    server.stop()


def registry(fake: FakeRunway) -> dict[str, Any]:
    entry = {
        "name": "runway",
        "kind": "runway",
        "base_url": fake.base_url,
        "api_key_env": "RUNWAY_E2E_KEY",
        "models": ["gen4.5", "veo3.1"],
        "poll_interval_seconds": 0.05,
        "timeout_seconds": 30,
    }
    return {"providers": [entry]}


async def until(condition: Any, timeout: float) -> None:
    """Waits for condition() to hold, polling."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_runway_job_completes_with_a_video_we_store_its_model_and_its_cost(
    start_stack: StackFactory, fake: FakeRunway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWAY_E2E_KEY", KEY)
    stack = await start_stack(registry=registry(fake), runway_e2e_key=KEY)

    done = await stack.wait_for((await create_job(stack.jobs, metadata=VIDEO)).id)

    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED, done.error_message
    assert (done.used_provider, done.used_model) == ("runway", "gen4.5")
    assert done.cost_usd == pytest.approx(0.60)
    assert fake.created == [("text_to_video", {"model": "gen4.5", "ratio": "1280:720", "duration": 5,
                                               "promptText": "a sunset over the ocean"})]  # fmt: skip
    path = stack.media / done.result.storage_key
    assert path.stat().st_size == done.result.size_bytes > 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) > 0
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 96, 64)
    assert KEY not in stack.worker.output()


async def test_cancelling_a_processing_runway_job_cancels_its_task_within_5_s(
    start_stack: StackFactory, fake: FakeRunway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWAY_E2E_KEY", KEY)
    stack = await start_stack(registry=registry(fake), runway_e2e_key=KEY)
    fake.hold = True
    job = await create_job(stack.jobs, metadata=VIDEO)
    await stack.wait_for(job.id, lambda j: j.progress_stage == "running")
    (task_id,) = fake.tasks

    await stack.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))

    await until(lambda: fake.deleted == [task_id], timeout=5)
    assert fake.tasks[task_id].status == "CANCELLED"
    await stack.event("job.attempt_finished", 5, job_id=job.id, outcome="cancelled")
    assert (await stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))).status == jobs_pb2.JOB_STATUS_CANCELLED


async def test_the_retry_after_a_killed_worker_cancels_the_task_it_left_then_completes(
    start_stack: StackFactory, fake: FakeRunway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNWAY_E2E_KEY", KEY)
    stack = await start_stack(
        registry=registry(fake), jobs={"job_lease_seconds": 1.5}, worker_heartbeat_interval=0.5, runway_e2e_key=KEY
    )
    fake.hold = True
    job = await create_job(stack.jobs, metadata=VIDEO, max_retries=2)
    await stack.wait_for(job.id, lambda j: j.progress_stage == "running")
    (old_task,) = fake.tasks
    first = await stack.event("job.attempt_started", job_id=job.id, attempt=0)

    os.kill(first["pid"], signal.SIGKILL)
    fake.hold = False

    done = await stack.wait_for(job.id, timeout=60)
    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED, done.error_message
    assert done.retry_count == 1
    await stack.event("job.attempt_started", job_id=job.id, attempt=1)
    old, new = fake.tasks  # in the order they were created
    assert old == old_task
    assert fake.deleted == [old]
    assert (fake.tasks[old].status, fake.tasks[new].status) == ("CANCELLED", "SUCCEEDED")
    # The old task was cancelled before the retry paid for a new one.
    order = [(c.method, c.path) for c in fake.calls if c.method in ("DELETE", "POST")]
    assert order == [("POST", "/v1/text_to_video"), ("DELETE", f"/v1/tasks/{old}"), ("POST", "/v1/text_to_video")]
    cancelled = await stack.event("job.previous_task_cancelled", job_id=job.id)
    assert (cancelled["provider"], cancelled["task_id"]) == ("runway", old)
    assert KEY not in stack.worker.output()
