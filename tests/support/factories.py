"""Factories for requests and jobs, in one place."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub


def unique_user() -> str:
    """A user id no other test uses, so that tests never see each other's jobs."""
    return f"user-{uuid.uuid4().hex[:12]}"


def create_request(**fields: Any) -> jobs_pb2.CreateJobRequest:
    """A valid CreateJobRequest, with fields overridden; metadata may be given as a dict."""
    values: dict[str, Any] = {"user_id": unique_user(), "prompt": "a sunset over the ocean"}
    metadata = fields.pop("metadata", None)
    if metadata is not None:
        values["metadata_json"] = json.dumps(metadata)
    values.update(fields)
    return jobs_pb2.CreateJobRequest(**values)


async def create_job(jobs: JobServiceAsyncStub, **fields: Any) -> jobs_pb2.Job:
    """Creates a job through the service."""
    job: jobs_pb2.Job = await jobs.CreateJob(create_request(**fields))
    return job


def video_result(job_id: str, attempt: int = 0, **fields: Any) -> jobs_pb2.VideoResult:
    """A plausible stored video of the job's attempt, named as the worker names it."""
    key = f"{job_id}.mp4" if attempt == 0 else f"{job_id}-{attempt}.mp4"
    values: dict[str, Any] = {
        "video_url": f"/media/{key}",
        "content_type": "video/mp4",
        "duration_seconds": 2.0,
        "width": 320,
        "height": 240,
        "fps": 24.0,
        "size_bytes": 12345,
        "storage_key": key,
    }
    values.update(fields)
    return jobs_pb2.VideoResult(**values)


async def processing_job(
    jobs: JobServiceAsyncStub,
    lifecycle: JobLifecycleServiceAsyncStub,
    *,
    worker_id: str = "worker-1",
    attempt: int | None = None,
    **fields: Any,
) -> jobs_pb2.Job:
    """A job a worker has started (naming its attempt when given)."""
    job = await create_job(jobs, **fields)
    request = lifecycle_pb2.StartJobRequest(id=job.id, worker_id=worker_id, attempt=attempt)
    started: jobs_pb2.Job = await lifecycle.StartJob(request)
    return started


async def job_in(
    jobs: JobServiceAsyncStub, lifecycle: JobLifecycleServiceAsyncStub, status: str, **fields: Any
) -> jobs_pb2.Job:
    """A job brought to status through the legal transitions."""
    job = await create_job(jobs, **fields)
    if status == "queued":
        return job
    if status == "cancelled":
        cancelled: jobs_pb2.Job = await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
        return cancelled
    job = await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="worker-1"))
    if status == "completed":
        job = await lifecycle.CompleteJob(
            lifecycle_pb2.CompleteJobRequest(
                id=job.id, result=video_result(job.id), used_provider="local", used_model="m1", generation_time_ms=10
            )
        )
    elif status == "failed":
        job = await lifecycle.FailJob(lifecycle_pb2.FailJobRequest(id=job.id, error_message="boom"))
    return job


def bare(job: jobs_pb2.Job) -> jobs_pb2.Job:
    """The job with its video URL's signature (fresh on every answer) taken off, for comparing
    answers of different moments."""
    copy = jobs_pb2.Job()
    copy.CopyFrom(job)
    if copy.HasField("result"):
        copy.result.video_url = copy.result.video_url.split("?", 1)[0]
    return copy


def bare_json(job: dict[str, Any]) -> dict[str, Any]:
    """As bare(), for a job's JSON."""
    result = job.get("result")
    if not isinstance(result, dict):
        return job
    return {**job, "result": {**result, "videoUrl": str(result.get("videoUrl", "")).split("?", 1)[0]}}
