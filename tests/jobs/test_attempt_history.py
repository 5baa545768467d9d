"""A job's attempts: each one that ended is recorded with its outcome, whatever ended it (a
worker's call, the hand-written hot path, the reaper, a cancel), and ListJobAttempts lists them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest

from services.core import db
from services.jobs.dispatch.statements import REAP
from tests.conftest import jobs_settings
from tests.support import databases
from tests.support.factories import create_job, processing_job, video_result
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub as Stub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub as Lifecycle


async def attempts_of(jobs: Stub, job_id: str) -> list[tuple[int, str, str, str, str]]:
    """(attempt, outcome, provider, error, worker id) of each ended attempt, as listed."""
    reply = await jobs.ListJobAttempts(jobs_pb2.ListJobAttemptsRequest(id=job_id))
    for attempt in reply.attempts:
        assert attempt.started_at.ToDatetime() <= attempt.ended_at.ToDatetime()
    return [(a.attempt, a.outcome, a.provider, a.error, a.worker_id) for a in reply.attempts]


async def start(lifecycle: Lifecycle, job_id: str, worker: str, attempt: int) -> None:
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job_id, worker_id=worker, attempt=attempt))


async def test_two_retries_then_a_completion_are_three_attempts_in_order(jobs: Stub, lifecycle: Lifecycle) -> None:
    job = await processing_job(jobs, lifecycle, worker_id="w-1", attempt=0)
    await lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="HTTP 503", attempt=0))
    await start(lifecycle, job.id, "w-2", 1)
    await lifecycle.RecordProviderTask(
        lifecycle_pb2.RecordProviderTaskRequest(id=job.id, provider="runway", task_id="t-1", attempt=1)
    )
    await lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="timed out", attempt=1))
    running = await attempts_of(jobs, job.id)
    await start(lifecycle, job.id, "w-3", 2)
    # The hot path's hand-written UPDATE: attempt named, no webhook.
    await lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(
            id=job.id, result=video_result(job.id, 2), used_provider="local", used_model="m", generation_time_ms=5,
            attempt=2,
        )
    )  # fmt: skip

    assert running == [(1, "retried", "", "HTTP 503", "w-1"), (2, "retried", "runway", "timed out", "w-2")]
    assert await attempts_of(jobs, job.id) == [*running, (3, "completed", "local", "", "w-3")]


async def test_a_failure_and_a_cancel_end_their_attempts(jobs: Stub, lifecycle: Lifecycle) -> None:
    failed = await processing_job(jobs, lifecycle, worker_id="w-1", attempt=0)
    cancelled = await processing_job(jobs, lifecycle, worker_id="w-2", attempt=0)
    queued = await create_job(jobs)

    await lifecycle.FailJob(
        lifecycle_pb2.FailJobRequest(id=failed.id, error_message="refused: unsafe", used_provider="fal", attempt=0)
    )
    await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=cancelled.id))
    await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=queued.id))

    assert await attempts_of(jobs, failed.id) == [(1, "failed", "fal", "refused: unsafe", "w-1")]
    assert await attempts_of(jobs, cancelled.id) == [(1, "cancelled", "", "", "w-2")]
    assert await attempts_of(jobs, queued.id) == []  # it never started


async def test_a_reaped_attempt_and_progress_in_between(jobs: Stub, lifecycle: Lifecycle, database_url: str) -> None:
    job = await processing_job(jobs, lifecycle, worker_id="w-lost", attempt=0)
    await lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=40, stage="render"))
    engine = db.create_engine(jobs_settings(), database_url)
    try:
        async with engine.begin() as connection:  # the reaper's own statement
            await connection.execute(REAP, {"ids": [job.id], "error": "the worker stopped heart-beating"})
    finally:
        await engine.dispose()

    assert await attempts_of(jobs, job.id) == [(1, "retried", "", "the worker stopped heart-beating", "w-lost")]


async def test_a_deleted_job_takes_its_attempts_with_it(jobs: Stub, lifecycle: Lifecycle, database_url: str) -> None:
    job = await processing_job(jobs, lifecycle, attempt=0)
    await lifecycle.FailJob(lifecycle_pb2.FailJobRequest(id=job.id, error_message="broken", attempt=0))

    await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=job.id))

    connection = await databases.connect(database_url)
    try:
        assert await connection.fetchval("SELECT count(*) FROM job_attempts WHERE job_id = $1", job.id) == 0
    finally:
        await connection.close()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.ListJobAttempts(jobs_pb2.ListJobAttemptsRequest(id=job.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("job_id", ["c" + "0" * 24, "Not-An-Id", ""])
async def test_attempts_of_an_unknown_or_malformed_id_are_not_found(jobs: Stub, job_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.ListJobAttempts(jobs_pb2.ListJobAttemptsRequest(id=job_id))

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_operators_update_is_recorded_too(jobs: Stub, lifecycle: Lifecycle, database_url: str) -> None:
    job = await processing_job(jobs, lifecycle, worker_id="w-1", attempt=0)
    connection = await databases.connect(database_url)
    try:
        await connection.execute(
            "UPDATE jobs SET status = 'failed', error_message = 'stopped by hand', completed_at = now() WHERE id = $1",
            job.id,
        )
    finally:
        await connection.close()

    assert await attempts_of(jobs, job.id) == [(1, "failed", "", "stopped by hand", "w-1")]
