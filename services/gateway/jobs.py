"""/api/v1/jobs: create, read, list, cancel and delete jobs through JobService."""

from __future__ import annotations

import json
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Header, Response

from services.core.job import rules
from services.core.job.public import Job, job_from_proto, optional_timestamp, timestamp
from services.core.job.status import STATUS_TO_PROTO, JobStatus
from services.core.protocol import REPLAYED_HEADER
from services.gateway.bodies import StrictJsonRoute
from services.gateway.deps import BackendsDep, call, call_with_metadata
from services.gateway.errors import BackendError
from services.gateway.schemas import (
    JobAttempt,
    JobAttempts,
    JobCreate,
    JobList,
    ListCursor,
    Problem,
    RateLimitProblem,
    Skip,
    Take,
    UserIdQuery,
)
from videogen.v1 import jobs_pb2

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], route_class=StrictJsonRoute)
ERRORS: dict[int | str, dict[str, Any]] = {422: {"model": Problem}, 503: {"model": Problem}}


CREATE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": Problem, "description": "The Idempotency-Key was used with a different request"},
    429: {
        "model": RateLimitProblem,
        "description": "Over the user's creation rate limit (`jobs_per_minute`) or a quota (`jobs_in_flight`, "
        "`video_seconds_per_day`, see docs/quotas.md); nothing was stored. Try again after `Retry-After` seconds.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
        },
    },
}


@router.post("", status_code=201, response_model=Job, responses=CREATE_ERRORS, summary="Create a video generation job")
async def create_job(
    body: JobCreate,
    backends: BackendsDep,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=rules.IDEMPOTENCY_KEY.pattern,
            description="Makes retries safe: the same key and body from the same user answer the first job "
            "(with `Idempotent-Replayed: true`); the same key with another body is 409.",
        ),
    ] = None,
) -> Job:
    """Queues the job on the queue `metadata.priority` names (high, low, or default)."""
    request = jobs_pb2.CreateJobRequest(
        user_id=body.userId or "",
        prompt=body.prompt,
        metadata_json=json.dumps(body.metadata or {}, separators=(",", ":"), ensure_ascii=False),
        max_retries=body.maxRetries,
        idempotency_key=idempotency_key or "",
        webhook_url=body.webhookUrl,
        webhook_events=body.webhookEvents or [],
    )
    reply, metadata = await call_with_metadata(backends.jobs.CreateJob, request, backends=backends, service="jobs")
    if metadata.get(REPLAYED_HEADER) == "true":
        response.headers["Idempotent-Replayed"] = "true"
    return job_from_proto(reply)


@router.get("/{job_id}", response_model=Job, responses={404: {"model": Problem}, 503: {"model": Problem}})
async def get_job(job_id: str, backends: BackendsDep) -> Job:
    """One job with its status, result and timings."""
    request = jobs_pb2.GetJobRequest(id=job_id)
    return job_from_proto(await call(backends.jobs.GetJob, request, backends=backends, service="jobs"))


@router.get(
    "/{job_id}/attempts",
    response_model=JobAttempts,
    responses={404: {"model": Problem}, 503: {"model": Problem}},
    summary="A job's ended attempts, oldest first",
)
async def job_attempts(job_id: str, backends: BackendsDep) -> JobAttempts:
    """Each attempt that ended (at most 100): its outcome, provider, error and times; the attempt
    running now is the job itself. History starts with the version that added this route."""
    request = jobs_pb2.ListJobAttemptsRequest(id=job_id)
    reply = await call(backends.jobs.ListJobAttempts, request, backends=backends, service="jobs")
    return JobAttempts(attempts=[_attempt(attempt) for attempt in reply.attempts])


def _attempt(attempt: jobs_pb2.JobAttempt) -> JobAttempt:
    return JobAttempt(
        attempt=attempt.attempt,
        outcome=attempt.outcome,  # one of the four: the table checks it
        provider=attempt.provider or None,
        error=attempt.error or None,
        startedAt=optional_timestamp(attempt, "started_at"),
        endedAt=timestamp(attempt.ended_at),
        workerId=attempt.worker_id or None,
    )


@router.get("", response_model=JobList, responses=ERRORS, summary="List jobs newest first")
async def list_jobs(
    backends: BackendsDep,
    userId: UserIdQuery = None,  # noqa: N803 - the contract's name
    status: JobStatus | None = None,
    skip: Skip = 0,
    take: Take = rules.TAKE_DEFAULT,
    cursor: ListCursor = None,
) -> JobList:
    """Filtered by user and status, `take` (1-100) at a time from `skip`, or after `cursor`."""
    request = jobs_pb2.ListJobsRequest(skip=skip, take=take, user_id=userId, cursor=cursor)
    if status is not None:
        request.status = STATUS_TO_PROTO[status]
    reply = await call(backends.jobs.ListJobs, request, backends=backends, service="jobs")
    return JobList(
        jobs=[job_from_proto(j) for j in reply.jobs],
        total=reply.total,
        skip=reply.skip,
        take=reply.take,
        nextCursor=reply.next_cursor if reply.HasField("next_cursor") else None,
    )


@router.delete(
    "/{job_id}",
    response_model=Job,
    responses={
        204: {"description": "The finished job and its video were deleted"},
        404: {"model": Problem},
        503: {"model": Problem},
    },
    summary="Cancel a running job, or delete a finished one",
)
async def delete_job(job_id: str, backends: BackendsDep) -> Job | Response:
    """A queued or processing job is cancelled (200 with the job); a finished one is deleted (204)."""
    try:
        cancelled = await call(
            backends.jobs.CancelJob, jobs_pb2.CancelJobRequest(id=job_id), backends=backends, service="jobs"
        )
        return job_from_proto(cancelled)
    except BackendError as exc:
        if exc.error.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise
    await call(backends.jobs.DeleteJob, jobs_pb2.DeleteJobRequest(id=job_id), backends=backends, service="jobs")
    return Response(status_code=204)
