"""Every validation rule of contract.md for jobs: INVALID_ARGUMENT naming the field, nothing stored."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.support.factories import create_job, create_request, processing_job, unique_user
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub as Stub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub


async def assert_invalid(call: Any, field: str) -> None:
    """The call fails with INVALID_ARGUMENT whose message and BadRequest details name field."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert (error.details() or "").startswith(f"{field}:"), error.details()
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # an aio error carries the same trailers
    assert status is not None
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == field


@pytest.mark.parametrize("user_id", ["", "a" * 129, "has space", "semi;colon", "slash/", "ünïcode", "tab\t", "nl\n"])
async def test_bad_user_id_is_refused(jobs: Stub, user_id: str) -> None:
    await assert_invalid(jobs.CreateJob(create_request(user_id=user_id)), "user_id")


@pytest.mark.parametrize("user_id", ["a", "a" * 128, "A-z_0.9:x@y"])
async def test_good_user_id_is_accepted(jobs: Stub, user_id: str) -> None:
    job = await create_job(jobs, user_id=user_id)

    assert job.user_id == user_id


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t", "x" * 4001, "nul\x00byte"])
async def test_bad_prompt_is_refused(jobs: Stub, prompt: str) -> None:
    await assert_invalid(jobs.CreateJob(create_request(prompt=prompt)), "prompt")


async def test_prompt_of_4000_characters_is_accepted(jobs: Stub) -> None:
    job = await create_job(jobs, prompt="é" * 4000)

    assert len(job.prompt) == 4000


@pytest.mark.parametrize(
    "metadata_json",
    [
        "[]",
        '"text"',
        "42",
        "null",
        "{not json",
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": "nul\\u0000"}',
        '{"nul\\u0000key": 1}',
        '{"a": "\\ud800"}',
        "[" * 5000 + "]" * 5000,
        '{"a": ' + "[" * 64 + "]" * 64 + "}",
        json.dumps({"big": "x" * 16 * 1024}),
    ],
)
async def test_bad_metadata_is_refused(jobs: Stub, metadata_json: str) -> None:
    await assert_invalid(jobs.CreateJob(create_request(metadata_json=metadata_json)), "metadata")


async def test_metadata_nested_64_deep_is_accepted(jobs: Stub) -> None:
    job = await create_job(jobs, metadata_json='{"a": ' + "[" * 63 + "]" * 63 + "}")

    assert job.metadata_json.count("[") == 63


async def test_metadata_of_exactly_16_kib_is_accepted(jobs: Stub) -> None:
    padding = 16 * 1024 - len(json.dumps({"pad": ""}, separators=(",", ":")))
    metadata = {"pad": "x" * padding}

    job = await create_job(jobs, metadata=metadata)

    assert json.loads(job.metadata_json) == metadata


@pytest.mark.parametrize("provider", [5, "", "UPPER", "has space", ["local"], "x" * 65])
async def test_metadata_provider_must_name_a_provider(jobs: Stub, provider: object) -> None:
    await assert_invalid(jobs.CreateJob(create_request(metadata={"provider": provider})), "metadata.provider")


@pytest.mark.parametrize("max_retries", [-1, 11, 1000])
async def test_max_retries_out_of_range_is_refused(jobs: Stub, max_retries: int) -> None:
    await assert_invalid(jobs.CreateJob(create_request(max_retries=max_retries)), "max_retries")


@pytest.mark.parametrize("max_retries", [0, 10])
async def test_max_retries_bounds_are_accepted(jobs: Stub, max_retries: int) -> None:
    job = await create_job(jobs, max_retries=max_retries)

    assert job.max_retries == max_retries


async def test_refused_create_stores_nothing(jobs: Stub) -> None:
    user = unique_user()
    await assert_invalid(jobs.CreateJob(create_request(user_id=user, prompt="")), "prompt")

    page = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user))

    assert page.total == 0


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"take": 0}, "take"),
        ({"take": 101}, "take"),
        ({"take": -5}, "take"),
        ({"skip": -1}, "skip"),
        ({"skip": 100_001}, "skip"),
        ({"status": 99}, "status"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "bad user"}, "user_id"),
    ],
)
async def test_bad_list_query_is_refused(jobs: Stub, request_fields: dict[str, Any], field: str) -> None:
    await assert_invalid(jobs.ListJobs(jobs_pb2.ListJobsRequest(**request_fields)), field)


async def test_list_take_bounds_are_accepted(jobs: Stub) -> None:
    one = await jobs.ListJobs(jobs_pb2.ListJobsRequest(take=1))
    hundred = await jobs.ListJobs(jobs_pb2.ListJobsRequest(take=100))

    assert (one.take, hundred.take) == (1, 100)


@pytest.mark.parametrize(
    ("percent", "stage", "field"), [(-1, "x", "percent"), (101, "x", "percent"), (5, "s" * 65, "stage")]
)
async def test_bad_progress_is_refused(
    jobs: Stub, percent: int, stage: str, field: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await processing_job(jobs, lifecycle)

    await assert_invalid(
        lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=percent, stage=stage)), field
    )


async def test_start_without_worker_id_is_refused(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await create_job(jobs)

    await assert_invalid(lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id)), "worker_id")


@pytest.mark.parametrize(
    ("result_fields", "field"),
    [
        ({"video_url": ""}, "result.video_url"),
        ({"content_type": ""}, "result.content_type"),
        ({"width": 0}, "result.width"),
        ({"height": -1}, "result.height"),
        ({"fps": 0.0}, "result.fps"),
        ({"duration_seconds": float("nan")}, "result.duration_seconds"),
        ({"size_bytes": -1}, "result.size_bytes"),
    ],
)
async def test_bad_video_result_is_refused(
    jobs: Stub, result_fields: dict[str, Any], field: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await processing_job(jobs, lifecycle)
    result = jobs_pb2.VideoResult(
        video_url="/media/a.mp4", content_type="video/mp4", duration_seconds=1, width=2, height=2, fps=1, size_bytes=1
    )
    for name, value in result_fields.items():
        setattr(result, name, value)
    request = lifecycle_pb2.CompleteJobRequest(
        id=job.id, result=result, used_provider="local", used_model="m", generation_time_ms=1
    )

    await assert_invalid(lifecycle.CompleteJob(request), field)


async def test_complete_without_result_is_refused(jobs: Stub, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    job = await processing_job(jobs, lifecycle)

    await assert_invalid(
        lifecycle.CompleteJob(lifecycle_pb2.CompleteJobRequest(id=job.id, used_provider="p", used_model="m")), "result"
    )


@pytest.mark.parametrize("message", ["", "   ", "nul\x00"])
async def test_fail_and_retry_need_an_error_message(
    jobs: Stub, message: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    job = await processing_job(jobs, lifecycle)

    await assert_invalid(
        lifecycle.FailJob(lifecycle_pb2.FailJobRequest(id=job.id, error_message=message)), "error_message"
    )
    await assert_invalid(
        lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message=message)), "error_message"
    )


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ({"component": "gpu", "metric": "m"}, "points[0].component"),
        ({"component": "api", "metric": ""}, "points[0].metric"),
        ({"component": "api", "metric": "m", "value": float("inf")}, "points[0].value"),
        ({"component": "api", "metric": "m", "tags_json": "[1]"}, "points[0].tags_json"),
        ({"component": "api", "metric": "m", "job_id": "NOT AN ID"}, "points[0].job_id"),
    ],
)
async def test_bad_telemetry_point_is_refused(
    jobs: Stub, point: dict[str, Any], field: str, lifecycle: JobLifecycleServiceAsyncStub
) -> None:
    request = lifecycle_pb2.RecordTelemetryRequest(points=[lifecycle_pb2.TelemetryPoint(**point)])

    await assert_invalid(lifecycle.RecordTelemetry(request), field)


@pytest.mark.parametrize("count", [0, 501])
async def test_telemetry_batch_size_is_bounded(jobs: Stub, count: int, lifecycle: JobLifecycleServiceAsyncStub) -> None:
    points = [lifecycle_pb2.TelemetryPoint(component="api", metric="m", value=1)] * count

    await assert_invalid(lifecycle.RecordTelemetry(lifecycle_pb2.RecordTelemetryRequest(points=points)), "points")
