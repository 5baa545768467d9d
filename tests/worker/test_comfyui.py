"""The comfyui kind end to end: the real worker runs jobs on a fake ComfyUI server with the
shipped Wan 2.2 workflow, behind an auth proxy's key."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from tests.support.factories import create_job
from tests.support.fake_comfyui import FakeComfyUI
from tests.support.processes import ROOT
from tests.support.stack import StackFactory
from videogen.v1 import jobs_pb2

KEY = "comfy-proxy-e2e-key-77c1d0"
MODEL = "wan2.2-ti2v-5b"


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    fake = FakeComfyUI(key=KEY).start()
    yield fake
    fake.stop()


def registry(fake: FakeComfyUI, workdir: Path) -> dict[str, Any]:
    workflow = workdir / "wan22_ti2v_5b_t2v.json"
    shutil.copy(ROOT / "deploy" / "comfyui" / workflow.name, workflow)
    return {
        "providers": [
            {
                "name": "comfy",
                "kind": "comfyui",
                "base_url": fake.base_url,
                "api_key_env": "COMFYUI_TEST_KEY",
                "workflow": str(workflow),
                "models": [MODEL],
                "capabilities": {MODEL: {"min_seconds": 1, "max_seconds": 5, "price_per_second": 0.005}},
                "poll_interval_seconds": 0.1,
                "timeout_seconds": 30,
            }
        ]
    }


async def test_a_job_runs_on_comfyui_and_its_video_is_stored_by_us(
    start_stack: StackFactory, comfy: FakeComfyUI, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMFYUI_TEST_KEY", KEY)
    stack = await start_stack(registry=registry(comfy, workdir), comfyui_test_key=KEY)

    job = await create_job(stack.jobs, prompt="a heron over a misty lake", metadata={"durationSeconds": 2})
    done = await stack.wait_for(job.id)

    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED, done.error_message
    assert (done.used_provider, done.used_model) == ("comfy", MODEL)
    assert done.cost_usd == pytest.approx(0.01)
    [graph] = [body["prompt"] for body in comfy.submitted()]
    assert graph["6"]["inputs"]["text"] == "a heron over a misty lake"
    assert (graph["55"]["inputs"]["width"], graph["55"]["inputs"]["length"], graph["57"]["inputs"]["fps"]) == (
        1280,
        2 * 24 + 1,
        24,
    )
    with av.open(str(stack.media / done.result.storage_key)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames > 0 and (done.result.width, done.result.height, done.result.codec) == (96, 64, "h264")
    assert KEY not in stack.worker.output()


async def test_cancelling_a_processing_job_interrupts_its_comfyui_prompt_within_5s(
    start_stack: StackFactory, comfy: FakeComfyUI, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMFYUI_TEST_KEY", KEY)
    stack = await start_stack(registry=registry(comfy, workdir), comfyui_test_key=KEY)
    comfy.hold.clear()
    job = await create_job(stack.jobs, metadata={"durationSeconds": 2})
    sampling = await stack.wait_for(job.id, lambda j: j.progress_stage.startswith("sampling"))

    await stack.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    async with asyncio.timeout(5):
        while not comfy.bodies("POST", "/interrupt"):
            await asyncio.sleep(0.05)

    await stack.event("job.attempt_finished", 10, job_id=job.id, outcome="cancelled")
    # The attempt stops its prompt, and so may the cancel task the jobs service sends: that prompt only.
    assert {body["prompt_id"] for body in comfy.bodies("POST", "/interrupt")} == {sampling.provider_task.task_id}
    final = await stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert final.status == jobs_pb2.JOB_STATUS_CANCELLED
    assert [p.name for p in stack.media.rglob("*") if p.is_file()] == []
