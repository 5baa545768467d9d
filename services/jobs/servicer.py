"""JobService over gRPC: protobuf in, domain calls, protobuf out; nothing else."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import grpc

from services.core.errors import InvalidArgument, Unavailable
from services.core.ids import new_cuid
from services.core.logging import current_request_id
from services.core.models import Job
from services.core.protocol import REPLAYED_HEADER
from services.core.storage import InvalidStorageKey, MediaStorage, StorageUnavailable
from services.jobs import domain, webhook_rpcs
from services.jobs.convert import enum_filter, timestamp
from services.jobs.domain import JobLimits, JobStatus
from services.jobs.outbox import DeliveryDesk
from services.jobs.service import Completion, JobsService
from services.jobs.watch import WatchHub, watch_job
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, webhooks_pb2

Context = grpc.aio.ServicerContext[Any, Any]
_STATUS_TO_PROTO = {status: jobs_pb2.JobStatus.Value(f"JOB_STATUS_{status.name}") for status in JobStatus}
_STATUS_FROM_PROTO: dict[int, JobStatus] = {number: status for status, number in _STATUS_TO_PROTO.items()}


def _video_url(result: dict[str, Any], storage: MediaStorage | None) -> str:
    """The URL stored with the job, or a fresh one when the backend's URLs expire (S3's presigned)."""
    stored, key = str(result.get("videoUrl", "")), result.get("storageKey")
    if storage is None or not isinstance(key, str) or not key:
        return stored
    try:
        return storage.fresh_url(key) or stored
    except InvalidStorageKey:
        return stored
    except StorageUnavailable as exc:
        # No answer rather than one whose video cannot be fetched.
        raise Unavailable(f"media storage: {exc}") from exc


def _result_to_proto(result: dict[str, Any], storage: MediaStorage | None) -> jobs_pb2.VideoResult:
    return jobs_pb2.VideoResult(
        video_url=_video_url(result, storage),
        content_type=str(result.get("contentType", "")),
        duration_seconds=float(result.get("durationSeconds", 0)),
        width=int(result.get("width", 0)),
        height=int(result.get("height", 0)),
        fps=float(result.get("fps", 0)),
        size_bytes=int(result.get("sizeBytes", 0)),
        storage_key=str(result.get("storageKey", "")),
    )


def job_to_proto(job: Job, storage: MediaStorage | None = None) -> jobs_pb2.Job:
    """The protobuf form of a stored job; with storage, its video URL is one a client can use now."""
    message = jobs_pb2.Job(
        id=job.id,
        user_id=job.user_id,
        status=_STATUS_TO_PROTO[JobStatus(job.status)],
        prompt=job.prompt,
        metadata_json=json.dumps(job.metadata_, separators=(",", ":"), ensure_ascii=False),
        retry_count=job.retry_count,
        max_retries=job.max_retries,
        used_provider=job.used_provider,
        used_model=job.used_model,
        generation_time_ms=job.generation_time_ms,
        error_message=job.error_message,
        created_at=timestamp(job.created_at),
        updated_at=timestamp(job.updated_at),
        started_at=timestamp(job.started_at),
        completed_at=timestamp(job.completed_at),
        queue=job.queue,
        progress_percent=job.progress_percent,
        progress_stage=job.progress_stage,
        webhook_url=job.webhook_url,
        webhook_events=job.webhook_events,
        event_id=job.event_seq,
    )
    if job.result is not None:
        message.result.CopyFrom(_result_to_proto(job.result, storage))
    return message


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    """Translates JobService calls into JobsService use cases."""

    def __init__(
        self,
        service: JobsService,
        limits: JobLimits,
        *,
        storage: MediaStorage | None = None,
        watch: WatchHub | None = None,
        deliveries: DeliveryDesk | None = None,
    ) -> None:
        self._deliveries = deliveries
        self._service = service
        self._limits = limits
        self._watch = watch
        self._storage = storage

    def _to_proto(self, job: Job) -> jobs_pb2.Job:
        return job_to_proto(job, self._storage)

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Context) -> jobs_pb2.Job:
        new = domain.validate_new_job(
            user_id=request.user_id,
            prompt=request.prompt,
            metadata_json=request.metadata_json,
            max_retries=request.max_retries if request.HasField("max_retries") else None,
            limits=self._limits,
            idempotency_key=request.idempotency_key,
            webhook_url=request.webhook_url if request.HasField("webhook_url") else None,
            webhook_events=list(request.webhook_events),
        )
        created = await self._service.create_job(new, request_id=current_request_id())
        if created.replayed:
            await context.send_initial_metadata(((REPLAYED_HEADER, "true"),))
        return self._to_proto(created.job)

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> jobs_pb2.Job:
        return self._to_proto(await self._service.get_job(domain.checked_job_id(request.id)))

    async def ListJobs(self, request: jobs_pb2.ListJobsRequest, context: Context) -> jobs_pb2.ListJobsResponse:
        query = domain.validate_filter(
            user_id=request.user_id if request.HasField("user_id") else None,
            status=enum_filter(request.status, _STATUS_FROM_PROTO, field="status", noun="status"),
            skip=request.skip,
            take=request.take if request.HasField("take") else None,
            limits=self._limits,
        )
        jobs, total = await self._service.list_jobs(query)
        return jobs_pb2.ListJobsResponse(
            jobs=[self._to_proto(job) for job in jobs], total=total, skip=query.skip, take=query.take
        )

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> jobs_pb2.Job:
        return self._to_proto(await self._service.cancel_job(domain.checked_job_id(request.id)))

    async def DeleteJob(self, request: jobs_pb2.DeleteJobRequest, context: Context) -> jobs_pb2.Job:
        return self._to_proto(await self._service.delete_job(domain.checked_job_id(request.id)))

    async def StartJob(self, request: jobs_pb2.StartJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        worker_id = domain.validate_label(request.worker_id, field="worker_id", max_chars=255)
        return self._to_proto(await self._service.start_job(job_id, worker_id=worker_id, attempt=_attempt(request)))

    async def ReportProgress(self, request: jobs_pb2.ReportProgressRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        percent, stage = domain.validate_progress(request.percent, request.stage)
        attempt = _attempt(request)
        job = await self._service.report_progress(job_id, percent=percent, stage=stage, attempt=attempt)
        return self._to_proto(job)

    async def CompleteJob(self, request: jobs_pb2.CompleteJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        if not request.HasField("result"):
            raise InvalidArgument("result", "is required")
        r = request.result
        completion = Completion(
            result=domain.validate_video_result(
                video_url=r.video_url,
                content_type=r.content_type,
                duration_seconds=r.duration_seconds,
                width=r.width,
                height=r.height,
                fps=r.fps,
                size_bytes=r.size_bytes,
                storage_key=r.storage_key,
            ),
            used_provider=domain.validate_label(request.used_provider, field="used_provider", max_chars=64),
            used_model=domain.validate_label(request.used_model, field="used_model", max_chars=128),
            generation_time_ms=_non_negative(request.generation_time_ms, "generation_time_ms"),
        )
        job = await self._service.complete_job(job_id, completion, attempt=_attempt(request))
        # The worker's answer: the URL it reported, never a presigned one (signing must not fail it).
        return job_to_proto(job)

    async def FailJob(self, request: jobs_pb2.FailJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        error = domain.validate_error_message(request.error_message)
        provider = _optional_label(request, "used_provider", 64)
        model = _optional_label(request, "used_model", 128)
        return self._to_proto(
            await self._service.fail_job(job_id, error=error, provider=provider, model=model, attempt=_attempt(request))
        )

    async def RetryJob(self, request: jobs_pb2.RetryJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        error = domain.validate_error_message(request.error_message)
        delay = request.retry_after_seconds
        if not (math.isfinite(delay) and 0 <= delay <= domain.RETRY_AFTER_MAX_SECONDS):
            raise InvalidArgument("retry_after_seconds", f"must be between 0 and {domain.RETRY_AFTER_MAX_SECONDS}")
        return self._to_proto(
            await self._service.retry_job(job_id, error=error, retry_after=delay, attempt=_attempt(request))
        )

    async def WatchJob(self, request: jobs_pb2.WatchJobRequest, context: Context) -> AsyncIterator[jobs_pb2.JobEvent]:
        job_id = domain.checked_job_id(request.id)
        after = _non_negative(request.after_event_id, "after_event_id") if request.HasField("after_event_id") else 0
        if self._watch is None:
            raise Unavailable("live events need Redis (REDIS_URL); this jobs service runs without it")
        async for event in watch_job(self._watch, job_id, after=after, read=self._read):
            yield event

    async def _read(self, job_id: str) -> jobs_pb2.Job:
        """One job as GetJob answers it, for WatchJob."""
        return self._to_proto(await self._service.get_job(job_id))

    async def ListJobDeliveries(
        self, request: webhooks_pb2.ListJobDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ListDeliveriesResponse:
        return await webhook_rpcs.list_job_deliveries(self._desk(), request, self._limits)

    async def ListDeliveries(
        self, request: webhooks_pb2.ListDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ListDeliveriesResponse:
        return await webhook_rpcs.list_deliveries(self._desk(), request, self._limits)

    async def Redeliver(self, request: webhooks_pb2.RedeliverRequest, context: Context) -> webhooks_pb2.WebhookDelivery:
        return await webhook_rpcs.redeliver(self._desk(), request)

    def _desk(self) -> DeliveryDesk:
        if self._deliveries is None:
            raise Unavailable("webhook deliveries are not served by this jobs service")
        return self._deliveries

    async def RecordTelemetry(
        self, request: jobs_pb2.RecordTelemetryRequest, context: Context
    ) -> jobs_pb2.RecordTelemetryResponse:
        if not 1 <= len(request.points) <= domain.TELEMETRY_MAX_POINTS:
            raise InvalidArgument("points", f"must hold 1-{domain.TELEMETRY_MAX_POINTS} points")
        rows = [_telemetry_row(index, point) for index, point in enumerate(request.points)]
        return jobs_pb2.RecordTelemetryResponse(recorded=await self._service.record_telemetry(rows))


_Attempted = (
    jobs_pb2.StartJobRequest
    | jobs_pb2.ReportProgressRequest
    | jobs_pb2.CompleteJobRequest
    | jobs_pb2.FailJobRequest
    | jobs_pb2.RetryJobRequest
)


def _attempt(request: _Attempted) -> int | None:
    """The attempt a worker names, when it names one."""
    return _non_negative(request.attempt, "attempt") if request.HasField("attempt") else None


def _non_negative(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    return value


def _optional_label(request: jobs_pb2.FailJobRequest, field: str, max_chars: int) -> str | None:
    if not request.HasField(field):  # type: ignore[arg-type]
        return None
    return domain.validate_label(getattr(request, field), field=field, max_chars=max_chars)


def _telemetry_row(index: int, point: jobs_pb2.TelemetryPoint) -> dict[str, Any]:
    prefix = f"points[{index}]"
    if point.component not in domain.TELEMETRY_COMPONENTS:
        raise InvalidArgument(f"{prefix}.component", f"must be one of {sorted(domain.TELEMETRY_COMPONENTS)}")
    job_id = point.job_id if point.HasField("job_id") else None
    if job_id is not None and not domain.JOB_ID.fullmatch(job_id):
        raise InvalidArgument(f"{prefix}.job_id", "is not a job id")
    return {
        "id": new_cuid(),
        "component": point.component,
        "metric": domain.validate_label(point.metric, field=f"{prefix}.metric", max_chars=128),
        "value": domain.validate_finite(point.value, f"{prefix}.value"),
        "tags": domain.parse_json_object(point.tags_json, field=f"{prefix}.tags_json", max_bytes=4096),
        "job_id": job_id,
    }
