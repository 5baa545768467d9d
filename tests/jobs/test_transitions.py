"""The state machine: each legal and illegal transition, enforced by the database, and races."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest

from tests.support import databases
from tests.support.factories import bare, create_job, job_in, processing_job, video_result
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub as Stub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub
Action = Callable[["Stub", "JobLifecycleServiceAsyncStub", str], Awaitable[Any]]

ACTIONS: dict[str, Action] = {
    "start": lambda s, w, i: w.StartJob(lifecycle_pb2.StartJobRequest(id=i, worker_id="w-2")),
    "progress": lambda s, w, i: w.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=i, percent=50, stage="render")),
    "complete": lambda s, w, i: w.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(
            id=i, result=video_result(i), used_provider="local", used_model="m", generation_time_ms=5
        )
    ),
    "fail": lambda s, w, i: w.FailJob(lifecycle_pb2.FailJobRequest(id=i, error_message="broken")),
    "retry": lambda s, w, i: w.RetryJob(lifecycle_pb2.RetryJobRequest(id=i, error_message="again")),
    "cancel": lambda s, w, i: s.CancelJob(jobs_pb2.CancelJobRequest(id=i)),
    "delete": lambda s, w, i: s.DeleteJob(jobs_pb2.DeleteJobRequest(id=i)),
}
STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
# (from, action) -> status after; every pair not listed is illegal.
LEGAL = {
    ("queued", "start"): "processing",
    ("queued", "cancel"): "cancelled",
    ("processing", "progress"): "processing",
    ("processing", "complete"): "completed",
    ("processing", "fail"): "failed",
    ("processing", "retry"): "queued",
    ("processing", "cancel"): "cancelled",
    ("completed", "delete"): "deleted",
    ("failed", "delete"): "deleted",
    ("cancelled", "delete"): "deleted",
}
# A completion asked again with its own video answers the completed job (a replay, below).
REPLAYS = {("completed", "complete")}
ILLEGAL = [(s, a) for s in STATUSES for a in ACTIONS if (s, a) not in LEGAL and (s, a) not in REPLAYS]


@pytest.mark.parametrize(("status", "action"), sorted(LEGAL))
async def test_legal_transition_moves_the_job(
    jobs: Stub, status: str, action: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await job_in(jobs, lifecycle, status)

    answer = await ACTIONS[action](jobs, lifecycle, job.id)

    expected = LEGAL[(status, action)]
    if expected == "deleted":
        assert answer.id == job.id
        return
    assert jobs_pb2.JobStatus.Name(answer.status) == f"JOB_STATUS_{expected.upper()}"


@pytest.mark.parametrize(("status", "action"), ILLEGAL)
async def test_illegal_transition_is_refused_and_changes_nothing(
    jobs: Stub, status: str, action: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await job_in(jobs, lifecycle, status)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ACTIONS[action](jobs, lifecycle, job.id)

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert status in (caught.value.details() or "")
    assert bare(await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))) == bare(job)


async def test_a_completion_asked_again_after_its_answer_was_lost_answers_the_completed_job(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await job_in(jobs, lifecycle, "processing")
    done = await ACTIONS["complete"](jobs, lifecycle, job.id)

    again = await ACTIONS["complete"](jobs, lifecycle, job.id)

    assert again.status == jobs_pb2.JOB_STATUS_COMPLETED
    assert bare(again) == bare(done) == bare(await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id)))


async def test_a_completion_with_another_video_of_a_completed_job_is_refused(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await job_in(jobs, lifecycle, "completed")
    other = lifecycle_pb2.CompleteJobRequest(
        id=job.id, result=video_result(job.id, attempt=1), used_provider="local", used_model="m", generation_time_ms=5
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lifecycle.CompleteJob(other)

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bare(await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))) == bare(job)


@pytest.mark.parametrize("action", sorted(ACTIONS))
async def test_transition_of_unknown_job_is_not_found(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub, action: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ACTIONS[action](jobs, lifecycle, "cnotthereatall0000000000a")

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("old", "new"), [("completed", "queued"), ("failed", "processing"), ("queued", "completed")])
async def test_database_refuses_an_illegal_update_from_any_client(
    jobs: Stub, database_url: str, old: str, new: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await job_in(jobs, lifecycle, old)
    connection = await databases.connect(database_url)
    try:
        with pytest.raises(asyncpg.CheckViolationError, match="illegal job transition"):
            await connection.execute("UPDATE jobs SET status = $1 WHERE id = $2", new, job.id)
    finally:
        await connection.close()


async def assert_refused(lifecycle: JobLifecycleServiceAsyncStub, *starts: lifecycle_pb2.StartJobRequest) -> None:
    """Each start is refused: FAILED_PRECONDITION."""
    for start in starts:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await lifecycle.StartJob(start)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_start_asked_again_by_its_own_message_answers_the_attempt_it_started(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await create_job(jobs)
    first = await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w@h/task-1", attempt=0))

    # The worker's deadline passed while its start landed: its message (same id) asks again.
    again = await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w@h/task-1", attempt=0))

    assert again.status == jobs_pb2.JOB_STATUS_PROCESSING and again.retry_count == first.retry_count == 0
    await assert_refused(
        lifecycle,
        lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w@h/task-2", attempt=0),  # another message's copy
        lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w@h/task-1", attempt=1),  # another attempt
        lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w@h/task-1"),  # no attempt named
    )


async def test_two_concurrent_starts_of_one_job_have_exactly_one_winner(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    for _ in range(20):
        job = await create_job(jobs)

        outcomes = await asyncio.gather(
            *(lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id=f"w-{n}")) for n in range(2)),
            return_exceptions=True,
        )

        winners = [o for o in outcomes if isinstance(o, jobs_pb2.Job)]
        losers = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert len(winners) == 1
        assert [loser.code() for loser in losers] == [grpc.StatusCode.FAILED_PRECONDITION]
        stored = await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
        assert stored.status == jobs_pb2.JOB_STATUS_PROCESSING


async def test_many_concurrent_starts_have_exactly_one_winner(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await create_job(jobs)

    outcomes = await asyncio.gather(
        *(lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id=f"w-{n}")) for n in range(16)),
        return_exceptions=True,
    )

    assert sum(isinstance(o, jobs_pb2.Job) for o in outcomes) == 1


async def test_completion_racing_cancellation_has_one_outcome(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    for _ in range(10):
        job = await job_in(jobs, lifecycle, "processing")

        complete, cancel = await asyncio.gather(
            ACTIONS["complete"](jobs, lifecycle, job.id),
            ACTIONS["cancel"](jobs, lifecycle, job.id),
            return_exceptions=True,
        )

        final = await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
        if isinstance(complete, jobs_pb2.Job):
            assert isinstance(cancel, grpc.aio.AioRpcError)
            assert final.status == jobs_pb2.JOB_STATUS_COMPLETED
        else:
            assert isinstance(cancel, jobs_pb2.Job)
            assert final.status == jobs_pb2.JOB_STATUS_CANCELLED


async def test_a_start_names_the_earlier_deliveries_it_may_take_over_from(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    # h/1 started the attempt, then heard UNAVAILABLE (the answer lost) and sent its message again.
    job = await processing_job(jobs, lifecycle, worker_id="h/1/task-1", attempt=0)

    taken = await lifecycle.StartJob(
        lifecycle_pb2.StartJobRequest(
            id=job.id, worker_id="h/2/task-1", attempt=0, resumes_worker_ids=["h/0/task-1", "h/1/task-1"]
        )
    )

    assert taken.status == jobs_pb2.JOB_STATUS_PROCESSING and taken.retry_count == 0
    # Taken over: neither the delivery it replaced nor another copy naming it starts it any more.
    await assert_refused(
        lifecycle,
        lifecycle_pb2.StartJobRequest(id=job.id, worker_id="h/1/task-1", attempt=0),
        lifecycle_pb2.StartJobRequest(id=job.id, worker_id="h/3/task-1", attempt=0, resumes_worker_ids=["h/1/task-1"]),
        lifecycle_pb2.StartJobRequest(id=job.id, worker_id="h/3/task-1", attempt=1, resumes_worker_ids=["h/2/task-1"]),
    )
    again = await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="h/2/task-1", attempt=0))
    assert again.status == jobs_pb2.JOB_STATUS_PROCESSING


async def test_two_copies_taking_over_one_delivery_have_exactly_one_winner(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await processing_job(jobs, lifecycle, worker_id="h/1/task-1", attempt=0)

    outcomes = await asyncio.gather(
        *(
            lifecycle.StartJob(
                lifecycle_pb2.StartJobRequest(
                    id=job.id, worker_id=f"h/{n}/task-1", attempt=0, resumes_worker_ids=["h/1/task-1"]
                )
            )
            for n in (2, 3)
        ),
        return_exceptions=True,
    )

    assert sorted(type(outcome).__name__ for outcome in outcomes) == ["AioRpcError", "Job"]


@pytest.mark.parametrize(
    ("resumes", "field"),
    [
        ([""], "resumes_worker_ids[0]"),
        (["h/1", "x" * 256], "resumes_worker_ids[1]"),
        (["h"] * 17, "resumes_worker_ids"),
    ],
)
async def test_a_start_naming_bad_earlier_deliveries_is_invalid(
    jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub, resumes: list[str], field: str
) -> None:
    job = await create_job(jobs)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lifecycle.StartJob(
            lifecycle_pb2.StartJobRequest(id=job.id, worker_id="h/2", attempt=0, resumes_worker_ids=resumes)
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (caught.value.details() or "")
    assert (await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))).status == jobs_pb2.JOB_STATUS_QUEUED
