"""Idempotent creation, and workers fenced to their own attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from tests.support.factories import bare, create_request, unique_user, video_result
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub as Stub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub


async def create_with_metadata(jobs: Stub, request: jobs_pb2.CreateJobRequest) -> tuple[jobs_pb2.Job, bool]:
    call = jobs.CreateJob(request)
    job: jobs_pb2.Job = await call
    replayed = dict(await call.initial_metadata() or ()).get("idempotent-replayed") == "true"
    return job, replayed


async def test_the_same_key_and_request_answer_the_first_job(jobs: Stub) -> None:
    request = create_request(idempotency_key="order-42")

    first, first_replayed = await create_with_metadata(jobs, request)
    second, second_replayed = await create_with_metadata(jobs, request)

    assert second.id == first.id
    assert (first_replayed, second_replayed) == (False, True)
    listed = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=request.user_id))
    assert listed.total == 1


async def test_concurrent_creates_with_one_key_make_one_job(jobs: Stub) -> None:
    request = create_request(idempotency_key="burst")

    created = await asyncio.gather(*(jobs.CreateJob(request) for _ in range(20)))

    assert len({job.id for job in created}) == 1
    assert (await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=request.user_id))).total == 1


async def test_the_same_key_with_another_request_is_already_exists(jobs: Stub) -> None:
    user = unique_user()
    await jobs.CreateJob(create_request(user_id=user, idempotency_key="k1", prompt="a cat"))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.CreateJob(create_request(user_id=user, idempotency_key="k1", prompt="a dog"))

    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert str(caught.value.details()).startswith("idempotency_key:")
    assert (await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user))).total == 1


async def test_keys_belong_to_their_user_and_no_key_means_no_deduplication(jobs: Stub) -> None:
    one = await jobs.CreateJob(create_request(idempotency_key="shared"))
    other = await jobs.CreateJob(create_request(idempotency_key="shared"))
    user = unique_user()
    plain = [await jobs.CreateJob(create_request(user_id=user)) for _ in range(2)]

    assert one.id != other.id
    assert plain[0].id != plain[1].id


@pytest.mark.parametrize("key", ["x" * 256, "has space", "é", "tab\t"])
async def test_a_malformed_key_is_invalid_argument(jobs: Stub, key: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.CreateJob(create_request(idempotency_key=key))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(caught.value.details()).startswith("idempotency_key:")


async def test_a_worker_on_an_old_attempt_is_fenced_off(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await jobs.CreateJob(create_request(max_retries=2))
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w-old", attempt=0))
    # The job is handed to another attempt (as the reaper does when w-old stops answering).
    await lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="worker lost", attempt=0))
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w-new", attempt=1))

    stale: list[Awaitable[Any]] = [
        lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=90, stage="x", attempt=0)),
        lifecycle.CompleteJob(
            lifecycle_pb2.CompleteJobRequest(
                id=job.id, result=video_result(job.id), used_provider="local", used_model="m", attempt=0
            )
        ),
        lifecycle.FailJob(lifecycle_pb2.FailJobRequest(id=job.id, error_message="old", attempt=0)),
        lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="old", attempt=0)),
    ]
    for call in stale:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is on attempt 2, not 1" in str(caught.value.details())

    current = await lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(
            id=job.id, result=video_result(job.id, 1), used_provider="local", used_model="m", attempt=1
        )
    )
    assert current.status == jobs_pb2.JOB_STATUS_COMPLETED
    # Asked again (its reply lost to an outage), the completion answers the job as it stands: the
    # job is not completed a second time.
    again = await lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(
            id=job.id, result=video_result(job.id, 1), used_provider="local", used_model="other", attempt=1
        )
    )
    assert bare(again) == bare(current) and again.used_model == "m"
