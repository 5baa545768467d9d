"""Every JobService RPC against the real PostgreSQL."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import grpc
import pytest

from services.core.ids import is_cuid
from tests.support import databases
from tests.support.factories import create_job, job_in, processing_job, unique_user, video_result
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub as Stub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub


async def test_create_job_answers_a_queued_job_with_every_field(jobs: Stub) -> None:
    user = unique_user()
    job = await create_job(jobs, user_id=user, prompt="a red fox", metadata={"style": "anime", "n": 3})

    assert is_cuid(job.id)
    assert job.user_id == user
    assert job.status == jobs_pb2.JOB_STATUS_QUEUED
    assert job.prompt == "a red fox"
    assert json.loads(job.metadata_json) == {"style": "anime", "n": 3}
    assert job.retry_count == 0
    assert job.max_retries == 3
    assert job.queue == "default"
    assert not job.HasField("result")
    assert not job.HasField("started_at")
    assert not job.HasField("completed_at")
    assert not job.HasField("error_message")
    assert job.created_at.seconds > 0
    assert job.updated_at == job.created_at


async def test_create_job_without_metadata_stores_an_empty_object(jobs: Stub) -> None:
    job = await jobs.CreateJob(jobs_pb2.CreateJobRequest(user_id=unique_user(), prompt="p"))

    assert json.loads(job.metadata_json) == {}


@pytest.mark.parametrize(
    ("priority", "queue"),
    [("high", "high_priority"), ("low", "low_priority"), ("normal", "default"), (None, "default"), (5, "default")],
)
async def test_priority_names_the_queue(jobs: Stub, priority: object, queue: str) -> None:
    metadata = {} if priority is None else {"priority": priority}

    job = await create_job(jobs, metadata=metadata)

    assert job.queue == queue


async def test_get_job_answers_the_stored_job(jobs: Stub) -> None:
    created = await create_job(jobs)

    fetched = await jobs.GetJob(jobs_pb2.GetJobRequest(id=created.id))

    assert fetched == created


@pytest.mark.parametrize("job_id", ["cnotthereatall0000000000a", "", "UPPER", "x" * 500, "../etc"])
async def test_get_unknown_job_is_not_found(jobs: Stub, job_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_jobs_filters_by_user_and_status_newest_first(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    user = unique_user()
    first = await create_job(jobs, user_id=user)
    second = await job_in(jobs, lifecycle, "processing", user_id=user)
    third = await create_job(jobs, user_id=user)
    await create_job(jobs)  # another user's

    everything = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user))
    queued = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, status=jobs_pb2.JOB_STATUS_QUEUED))

    assert [job.id for job in everything.jobs] == [third.id, second.id, first.id]
    assert (everything.total, everything.skip, everything.take) == (3, 0, 20)
    assert [job.id for job in queued.jobs] == [third.id, first.id]
    assert queued.total == 2


async def test_list_jobs_without_filters_spans_users(jobs: Stub) -> None:
    await create_job(jobs)
    await create_job(jobs)

    page = await jobs.ListJobs(jobs_pb2.ListJobsRequest(take=2))

    assert len(page.jobs) == 2
    assert page.total >= 2


async def test_cancel_queued_job(jobs: Stub) -> None:
    job = await create_job(jobs)

    cancelled = await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))

    assert cancelled.status == jobs_pb2.JOB_STATUS_CANCELLED
    assert cancelled.HasField("completed_at")


async def test_delete_final_job_removes_it(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await job_in(jobs, lifecycle, "completed")

    deleted = await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=job.id))

    assert deleted.id == job.id
    assert deleted.result.storage_key == f"{job.id}.mp4"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_start_job_records_the_worker_and_time(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await create_job(jobs)

    started = await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="celery@host-1"))

    assert started.status == jobs_pb2.JOB_STATUS_PROCESSING
    assert started.HasField("started_at")
    assert started.progress_stage == "starting"


async def test_report_progress_updates_percent_and_stage(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await processing_job(jobs, lifecycle)

    reported = await lifecycle.ReportProgress(
        lifecycle_pb2.ReportProgressRequest(id=job.id, percent=40, stage="rendering")
    )

    assert (reported.progress_percent, reported.progress_stage) == (40, "rendering")
    assert reported.status == jobs_pb2.JOB_STATUS_PROCESSING


async def test_complete_job_stores_result_and_provider(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await processing_job(jobs, lifecycle)

    completed = await lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(
            id=job.id,
            result=video_result(job.id),
            used_provider="local",
            used_model="lavfi-v1",
            generation_time_ms=1234,
        )
    )

    assert completed.status == jobs_pb2.JOB_STATUS_COMPLETED
    assert completed.result == video_result(job.id)
    assert (completed.used_provider, completed.used_model, completed.generation_time_ms) == ("local", "lavfi-v1", 1234)
    assert completed.progress_percent == 100
    assert completed.HasField("completed_at")


async def test_completed_result_is_stored_in_the_contract_shape(
    jobs: Stub, database_url: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await job_in(jobs, lifecycle, "completed")

    connection = await databases.connect(database_url)
    try:
        stored = json.loads(await connection.fetchval("SELECT result::text FROM jobs WHERE id = $1", job.id))
    finally:
        await connection.close()

    assert stored == {
        "video_url": f"/media/{job.id}.mp4",
        "content_type": "video/mp4",
        "duration_seconds": 2.0,
        "width": 320,
        "height": 240,
        "fps": 24.0,
        "size_bytes": 12345,
        "storage_key": f"{job.id}.mp4",
    }


async def test_fail_job_keeps_the_error(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await processing_job(jobs, lifecycle)

    failed = await lifecycle.FailJob(
        lifecycle_pb2.FailJobRequest(id=job.id, error_message="provider exploded", used_provider="x")
    )

    assert failed.status == jobs_pb2.JOB_STATUS_FAILED
    assert failed.error_message == "provider exploded"
    assert failed.used_provider == "x"
    assert failed.HasField("completed_at")


async def test_retry_job_requeues_and_counts(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await processing_job(jobs, lifecycle, max_retries=2)

    retried = await lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="timeout"))

    assert retried.status == jobs_pb2.JOB_STATUS_QUEUED
    assert retried.retry_count == 1
    assert retried.error_message == "timeout"
    assert retried.progress_percent == 0


async def test_retry_beyond_max_retries_is_refused(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await processing_job(jobs, lifecycle, max_retries=1)
    await lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="first"))
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w"))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="second"))

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "retries" in (caught.value.details() or "")
    current = await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert (current.status, current.retry_count) == (jobs_pb2.JOB_STATUS_PROCESSING, 1)


async def test_record_telemetry_stores_points(
    jobs: Stub, database_url: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await create_job(jobs)
    points = [
        lifecycle_pb2.TelemetryPoint(
            component="worker", metric="render_ms", value=12.5, tags_json='{"k": 1}', job_id=job.id
        ),
        lifecycle_pb2.TelemetryPoint(component="api", metric="requests", value=1),
    ]

    reply = await lifecycle.RecordTelemetry(lifecycle_pb2.RecordTelemetryRequest(points=points))

    assert reply.recorded == 2
    connection = await databases.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT component, metric, value, tags::text FROM metrics WHERE job_id = $1", job.id
        )
    finally:
        await connection.close()
    assert (row["component"], row["metric"], row["value"], json.loads(row["tags"])) == (
        "worker",
        "render_ms",
        12.5,
        {"k": 1},
    )


async def test_telemetry_naming_an_unknown_job_records_nothing(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    points = [
        lifecycle_pb2.TelemetryPoint(component="api", metric="ok", value=1),
        lifecycle_pb2.TelemetryPoint(component="api", metric="bad", value=1, job_id="cnotthereatall0000000000a"),
    ]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lifecycle.RecordTelemetry(lifecycle_pb2.RecordTelemetryRequest(points=points))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("points.job_id")
