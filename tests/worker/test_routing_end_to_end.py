"""Through the real worker: routing by what a job asks, the cost recorded, refusals that fail at
once, the provider task recorded, and a provider's concurrency cap held across jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.factories import create_job
from tests.support.stack import StackFactory
from videogen.v1 import jobs_pb2

SCRIPTED = "tests.support.scripted_provider:ScriptedProvider"
LOCAL = {"name": "local", "kind": "local"}


def scripted(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "kind": "plugin", "plugin": SCRIPTED, **fields}


async def test_a_job_goes_to_the_cheapest_provider_that_can_make_it_and_records_its_cost(
    start_stack: StackFactory,
) -> None:
    wide = {"durations": [5, 10], "aspect_ratios": ["16:9"], "price_per_second": 0.12}
    short = {"durations": [4, 6, 8], "aspect_ratios": ["16:9"], "price_per_second": 0.05}
    registry = {"providers": [
        scripted("long-pricey", models=["ray"], capabilities={"ray": wide}),
        scripted("short-cheap", models=["veo"], capabilities={"veo": short}),
    ]}  # fmt: skip
    stack = await start_stack(registry=registry)

    ten = await stack.wait_for(
        (await create_job(stack.jobs, metadata={"durationSeconds": 10, "aspectRatio": "16:9"})).id
    )
    four = await stack.wait_for((await create_job(stack.jobs, metadata={"durationSeconds": 4})).id)

    assert (ten.status, ten.used_provider, ten.used_model) == (jobs_pb2.JOB_STATUS_COMPLETED, "long-pricey", "ray")
    assert ten.cost_usd == pytest.approx(1.2)
    assert four.used_provider == "short-cheap" and four.cost_usd == pytest.approx(0.2)
    assert ten.result.codec == "h264"


async def test_a_job_nobody_can_make_fails_at_once_naming_what_it_asked(start_stack: StackFactory) -> None:
    stack = await start_stack(registry={"providers": [LOCAL]})

    too_long = await stack.wait_for((await create_job(stack.jobs, metadata={"durationSeconds": 120})).id)
    from_image = await stack.wait_for(
        (await create_job(stack.jobs, metadata={"imageUrl": "https://example.com/first.png"})).id
    )

    assert (too_long.status, too_long.retry_count) == (jobs_pb2.JOB_STATUS_FAILED, 0)
    assert "a 120 s video from text" in too_long.error_message and "makes 1-60 s" in too_long.error_message
    assert (from_image.status, from_image.retry_count) == (jobs_pb2.JOB_STATUS_FAILED, 0)
    assert "from an image" in from_image.error_message and "takes no input image" in from_image.error_message


async def test_a_final_provider_refusal_fails_the_job_without_retry_or_failover(start_stack: StackFactory) -> None:
    # `local` costs more here, so that routing tries `strict` first and would fail over to `local`.
    pricey_local = {**LOCAL, "capabilities": {"local-pyav-h264-v1": {"max_seconds": 60, "price_per_second": 1.0}}}
    stack = await start_stack(registry={"providers": [scripted("strict"), pricey_local]})
    script = {"fail": "SAFETY.INPUT.TEXT: the prompt was refused", "final": True}

    job = await stack.wait_for(
        (await create_job(stack.jobs, max_retries=3, metadata={"modelInput": {"script": script}})).id
    )

    assert (job.status, job.retry_count, job.used_provider) == (jobs_pb2.JOB_STATUS_FAILED, 0, "strict")
    assert "SAFETY.INPUT.TEXT" in job.error_message


async def test_the_attempt_records_its_provider_task_on_the_job(start_stack: StackFactory, workdir: Path) -> None:
    stack = await start_stack()
    gate, task = workdir / "gate", workdir / "task-1"
    script = {"task": str(task), "gate": str(gate)}
    job = await create_job(stack.jobs, metadata={"provider": "scripted", "modelInput": {"script": script}})

    running = await stack.wait_for(job.id, lambda j: j.HasField("provider_task"))
    gate.touch()
    done = await stack.wait_for(job.id)

    assert (running.provider_task.provider, running.provider_task.task_id) == ("scripted", str(task))
    assert running.provider_task.attempt == 0
    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED


async def test_a_providers_concurrency_cap_holds_jobs_back_until_a_slot_frees(
    start_stack: StackFactory, workdir: Path
) -> None:
    stack = await start_stack(registry={"providers": [scripted("capped", max_concurrency=1)]}, worker_concurrency=2)
    first_gate, second_gate = workdir / "gate-1", workdir / "gate-2"
    first = await create_job(stack.jobs, metadata={"modelInput": {"script": {"gate": str(first_gate)}}})
    await stack.wait_for(first.id, lambda j: j.progress_stage == "waiting")
    second = await create_job(stack.jobs, metadata={"modelInput": {"script": {"gate": str(second_gate)}}})

    waiting = await stack.wait_for(second.id, lambda j: j.progress_stage == "waiting for capped")
    await asyncio.sleep(1.5)  # a held slot stays held: the second never gets past waiting meanwhile
    still = await stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=second.id))
    first_gate.touch()
    second_gate.touch()
    done = [await stack.wait_for(job.id) for job in (first, second)]

    assert waiting.status == jobs_pb2.JOB_STATUS_PROCESSING
    assert still.progress_stage == "waiting for capped"
    assert [job.status for job in done] == [jobs_pb2.JOB_STATUS_COMPLETED] * 2


async def test_cancelling_a_job_cancels_its_provider_task_even_when_no_worker_comes_back(
    start_stack: StackFactory, workdir: Path
) -> None:
    stack = await start_stack()
    gate, task = workdir / "gate", workdir / "task-1"
    job = await create_job(
        stack.jobs, metadata={"provider": "scripted", "modelInput": {"script": {"task": str(task), "gate": str(gate)}}}
    )
    await stack.wait_for(job.id, lambda j: j.HasField("provider_task"))

    await stack.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))

    # The scripted provider never cancels on its own: the jobs service's cancel message did it.
    async with asyncio.timeout(10):
        while not task.exists():
            await asyncio.sleep(0.05)
    assert task.read_text() == "cancelled"
    gate.touch()
