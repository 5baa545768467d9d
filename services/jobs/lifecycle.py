"""JobLifecycleService over gRPC: the workers' transitions of a job, protobuf in and out.

Internal: the edge does not route it, and the CallGuard admits only the service credential.
Its answers carry the URLs the worker reported, never freshly signed ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import grpc

from services.core.errors import InvalidArgument
from services.core.ids import new_cuid
from services.core.job.result import VideoResult
from services.core.job.rules import JOB_ID, parse_json_object, validate_label
from services.core.tasks import MAX_RESUMED_WORKERS
from services.jobs import domain
from services.jobs.attempts import Attempts, Completion
from services.jobs.convert import job_to_proto
from videogen.v1 import jobs_pb2, lifecycle_pb2, lifecycle_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class JobLifecycleServicer(lifecycle_pb2_grpc.JobLifecycleServiceServicer):
    """Translates the workers' calls into their use cases (services/jobs/attempts.py)."""

    def __init__(self, attempts: Attempts) -> None:
        self._attempts = attempts

    async def StartJob(self, request: lifecycle_pb2.StartJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        worker_id = validate_label(request.worker_id, field="worker_id", max_chars=255)
        resumes = _resumed_workers(request.resumes_worker_ids)
        job = await self._attempts.start(job_id, worker_id=worker_id, attempt=_attempt(request), resumes=resumes)
        return job_to_proto(job)

    async def ReportProgress(self, request: lifecycle_pb2.ReportProgressRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        percent, stage = domain.validate_progress(request.percent, request.stage)
        attempt = _attempt(request)
        job = await self._attempts.report_progress(job_id, percent=percent, stage=stage, attempt=attempt)
        return job_to_proto(job)

    async def CompleteJob(self, request: lifecycle_pb2.CompleteJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        if not request.HasField("result"):
            raise InvalidArgument("result", "is required")
        r = request.result
        attempt = _attempt(request)
        completion = Completion(
            result=VideoResult(
                video_url=r.video_url,
                content_type=r.content_type,
                duration_seconds=r.duration_seconds,
                width=r.width,
                height=r.height,
                fps=r.fps,
                size_bytes=r.size_bytes,
                storage_key=r.storage_key,
                codec=r.codec,
            ).checked(job_id=job_id, attempt=attempt),
            used_provider=validate_label(request.used_provider, field="used_provider", max_chars=64),
            used_model=validate_label(request.used_model, field="used_model", max_chars=128),
            generation_time_ms=domain.non_negative(request.generation_time_ms, "generation_time_ms"),
            cost_usd=domain.validate_cost(request.cost_usd) if request.HasField("cost_usd") else None,
        )
        job = await self._attempts.complete(job_id, completion, attempt=attempt)
        # The worker's answer: the URL it reported, never a presigned one (signing must not fail it).
        return job_to_proto(job)

    async def RecordProviderTask(
        self, request: lifecycle_pb2.RecordProviderTaskRequest, context: Context
    ) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        provider = validate_label(request.provider, field="provider", max_chars=64)
        task_id = validate_label(request.task_id, field="task_id", max_chars=255)
        attempt = _attempt(request)
        return job_to_proto(
            await self._attempts.record_provider_task(job_id, provider=provider, task_id=task_id, attempt=attempt)
        )

    async def FailJob(self, request: lifecycle_pb2.FailJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        error = domain.validate_error_message(request.error_message)
        provider = _optional_label(request, "used_provider", 64)
        model = _optional_label(request, "used_model", 128)
        return job_to_proto(
            await self._attempts.fail(job_id, error=error, provider=provider, model=model, attempt=_attempt(request))
        )

    async def RetryJob(self, request: lifecycle_pb2.RetryJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        error = domain.validate_error_message(request.error_message)
        delay = request.retry_after_seconds
        if not (math.isfinite(delay) and 0 <= delay <= domain.RETRY_AFTER_MAX_SECONDS):
            raise InvalidArgument("retry_after_seconds", f"must be between 0 and {domain.RETRY_AFTER_MAX_SECONDS}")
        return job_to_proto(
            await self._attempts.retry(job_id, error=error, retry_after=delay, attempt=_attempt(request))
        )

    async def RecordTelemetry(
        self, request: lifecycle_pb2.RecordTelemetryRequest, context: Context
    ) -> lifecycle_pb2.RecordTelemetryResponse:
        if not 1 <= len(request.points) <= domain.TELEMETRY_MAX_POINTS:
            raise InvalidArgument("points", f"must hold 1-{domain.TELEMETRY_MAX_POINTS} points")
        rows = [_telemetry_row(index, point) for index, point in enumerate(request.points)]
        return lifecycle_pb2.RecordTelemetryResponse(recorded=await self._attempts.record_telemetry(rows))


_Attempted = (
    lifecycle_pb2.StartJobRequest
    | lifecycle_pb2.RecordProviderTaskRequest
    | lifecycle_pb2.ReportProgressRequest
    | lifecycle_pb2.CompleteJobRequest
    | lifecycle_pb2.FailJobRequest
    | lifecycle_pb2.RetryJobRequest
)


def _attempt(request: _Attempted) -> int | None:
    """The attempt a worker names, when it names one."""
    return domain.non_negative(request.attempt, "attempt") if request.HasField("attempt") else None


def _resumed_workers(ids: Sequence[str]) -> tuple[str, ...]:
    """The earlier deliveries' worker ids a start may take over from, each a label."""
    if len(ids) > MAX_RESUMED_WORKERS:
        raise InvalidArgument("resumes_worker_ids", f"holds at most {MAX_RESUMED_WORKERS} ids")
    return tuple(
        validate_label(worker, field=f"resumes_worker_ids[{index}]", max_chars=255) for index, worker in enumerate(ids)
    )


def _optional_label(request: lifecycle_pb2.FailJobRequest, field: str, max_chars: int) -> str | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    return validate_label(getattr(request, field), field=field, max_chars=max_chars)


def _telemetry_row(index: int, point: lifecycle_pb2.TelemetryPoint) -> dict[str, Any]:
    prefix = f"points[{index}]"
    if point.component not in domain.TELEMETRY_COMPONENTS:
        raise InvalidArgument(f"{prefix}.component", f"must be one of {sorted(domain.TELEMETRY_COMPONENTS)}")
    job_id = point.job_id if point.HasField("job_id") else None
    if job_id is not None and not JOB_ID.fullmatch(job_id):
        raise InvalidArgument(f"{prefix}.job_id", "is not a job id")
    return {
        "id": new_cuid(),
        "component": point.component,
        "metric": validate_label(point.metric, field=f"{prefix}.metric", max_chars=128),
        "value": domain.validate_finite(point.value, f"{prefix}.value"),
        "tags": parse_json_object(point.tags_json, field=f"{prefix}.tags_json", max_bytes=4096),
        "job_id": job_id,
    }
