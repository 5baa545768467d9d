"""A running attempt's heartbeat across an outage of the jobs service: kept, latest only, resent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.support.factories import create_job
from tests.support.stack import StackFactory
from videogen.v1 import jobs_pb2


async def wait_for_file(path: Path, text: str, timeout: float) -> None:
    """Waits until path holds text."""
    async with asyncio.timeout(timeout):
        while not (path.exists() and path.read_text() == text):
            await asyncio.sleep(0.02)


async def test_the_latest_progress_is_resent_as_soon_as_the_jobs_service_answers_again(
    start_stack: StackFactory, workdir: Path
) -> None:
    # A beat only every 30 s: what lands right after the outage is the resend, not a beat.
    stack = await start_stack(jobs_proxy=True, worker_heartbeat_interval=30, worker_rpc_timeout=1)
    assert stack.jobs_proxy is not None
    gate, echo, heard = workdir / "gate", workdir / "echo", workdir / "echo.heard"
    script = {"gate": str(gate), "echo": str(echo)}
    job = await create_job(stack.jobs, metadata={"provider": "scripted", "modelInput": {"script": script}})
    await stack.wait_for(job.id, lambda j: j.progress_stage == "waiting")

    stack.jobs_proxy.blackhole = True  # the jobs service never answers the worker
    echo.write_text("first during the outage")
    await wait_for_file(heard, "first during the outage", timeout=2)
    await stack.event("job.jobs_unreachable", 10, job_id=job.id)
    # The render goes on while its reports go unanswered.
    echo.write_text("latest during the outage")
    await wait_for_file(heard, "latest during the outage", timeout=2)
    during = await stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert (during.status, during.progress_stage) == (jobs_pb2.JOB_STATUS_PROCESSING, "waiting")

    stack.jobs_proxy.blackhole = False
    healed = time.monotonic()
    await stack.wait_for(job.id, lambda j: j.progress_stage == "latest during the outage", timeout=10)
    assert time.monotonic() - healed < 1.0

    gate.touch()
    done = await stack.wait_for(job.id)
    assert (done.status, done.retry_count) == (jobs_pb2.JOB_STATUS_COMPLETED, 0), done.error_message
    await stack.event("job.progress_resent", 5, job_id=job.id)
