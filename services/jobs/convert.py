"""Conversions between the jobs service's rows and its protobuf messages, shared by its RPCs,
its webhooks and its live events."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from services.core.errors import InvalidArgument, Unavailable
from services.core.job.result import VideoResult
from services.core.job.status import STATUS_TO_PROTO, JobStatus
from services.core.models import Job, JobAttempt
from services.core.storage.base import InvalidStorageKey, MediaStorage, StorageUnavailable
from videogen.v1 import jobs_pb2

Value = TypeVar("Value")


def timestamp(value: datetime | None) -> Timestamp | None:
    """The protobuf Timestamp of an optional datetime."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def enum_filter(number: int, from_proto: Mapping[int, Value], *, field: str, noun: str) -> Value | None:
    """A filter from a proto enum: None for its UNSPECIFIED (0, any), INVALID_ARGUMENT naming the
    field for a number the enum does not have."""
    if number == 0:
        return None
    value = from_proto.get(number)
    if value is None:
        raise InvalidArgument(field, f"unknown {noun} {number}")
    return value


def _video_url(result: VideoResult, storage: MediaStorage | None) -> str:
    """The URL stored with the job, or a fresh one where the backend's URLs expire (signed local
    URLs, S3's presigned ones)."""
    if storage is None or not result.storage_key:
        return result.video_url
    try:
        return storage.fresh_url(result.storage_key) or result.video_url
    except InvalidStorageKey:
        return result.video_url
    except StorageUnavailable as exc:
        # No answer rather than one whose video cannot be fetched.
        raise Unavailable(f"media storage: {exc}") from exc


def _result_to_proto(result: VideoResult, storage: MediaStorage | None) -> jobs_pb2.VideoResult:
    return jobs_pb2.VideoResult(
        video_url=_video_url(result, storage),
        content_type=result.content_type,
        duration_seconds=result.duration_seconds,
        width=result.width,
        height=result.height,
        fps=result.fps,
        size_bytes=result.size_bytes,
        storage_key=result.storage_key,
        codec=result.codec,
    )


def job_to_proto(job: Job, storage: MediaStorage | None = None) -> jobs_pb2.Job:
    """The protobuf form of a stored job; with storage, its video URL is one a client can use now."""
    message = jobs_pb2.Job(
        id=job.id,
        user_id=job.user_id,
        status=STATUS_TO_PROTO[JobStatus(job.status)],
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
        cost_usd=None if job.cost_usd is None else float(job.cost_usd),
    )
    if job.provider_task:
        task = job.provider_task
        message.provider_task.CopyFrom(
            jobs_pb2.ProviderTask(
                provider=str(task.get("provider", "")),
                task_id=str(task.get("taskId", "")),
                attempt=int(task.get("attempt") or 0),
            )
        )
    if job.result is not None:
        message.result.CopyFrom(_result_to_proto(VideoResult.from_stored(job.result), storage))
    return message


def attempt_to_proto(attempt: JobAttempt, *, with_worker: bool) -> jobs_pb2.JobAttempt:
    """An ended attempt; its worker id only when with_worker (the admin's)."""
    return jobs_pb2.JobAttempt(
        attempt=attempt.attempt,
        outcome=attempt.outcome,
        provider=attempt.provider or "",
        error=attempt.error or "",
        started_at=timestamp(attempt.started_at),
        ended_at=timestamp(attempt.ended_at),
        worker_id=(attempt.worker_id or "") if with_worker else "",
    )
