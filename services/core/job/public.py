"""A job as clients see it: the one renderer of a job's public JSON (camelCase), used by the
gateway's answers, its live events and the jobs service's webhook bodies alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from services.core.job.status import STATUS_FROM_PROTO, JobStatus
from videogen.v1 import jobs_pb2

JOB_EXAMPLE: dict[str, Any] = {
    "id": "cmwwxjck83noow87bhzi07al8",
    "userId": "user-123",
    "status": "completed",
    "prompt": "Create a video of a sunset over the ocean",
    "metadata": {"priority": "high"},
    "result": {
        "videoUrl": "/media/cmwwxjck83noow87bhzi07al8.mp4?expires=1795683600"
        "&signature=0ndAqpKLYnh0hMVhZ0OIHKK5g9-ZR_b8cnZuV2_dm74",
        "contentType": "video/mp4",
        "durationSeconds": 4.0,
        "width": 640,
        "height": 360,
        "fps": 24.0,
        "sizeBytes": 48213,
        "codec": "h264",
    },
    "retryCount": 0,
    "maxRetries": 3,
    "usedProvider": "local",
    "usedModel": "local-pyav-h264-v1",
    "generationTimeMs": 812,
    "costUsd": 0.0,
    "errorMessage": None,
    "createdAt": "2026-11-26T10:00:00.000000+00:00",
    "updatedAt": "2026-11-26T10:00:01.300000+00:00",
    "startedAt": "2026-11-26T10:00:00.200000+00:00",
    "completedAt": "2026-11-26T10:00:01.300000+00:00",
    "webhookUrl": "https://example.com/hooks/videogen",
    "webhookEvents": ["job.completed", "job.failed"],
    "progressPercent": 100,
    "progressStage": "completed",
}


class VideoResult(BaseModel):
    """The stored video of a completed job."""

    videoUrl: str = Field(
        description="Where to fetch the video, signed afresh for each answer: fetch the job again for a new "
        "one once it expires (docs/storage.md). With MEDIA_BACKEND=local a path under the edge such as "
        "/media/<id>.mp4?expires=<unix seconds>&signature=<...>, valid for MEDIA_URL_TTL_SECONDS (Range "
        "requests work); with MEDIA_BACKEND=s3 a presigned GET URL to the object store, valid for "
        "S3_PRESIGN_SECONDS."
    )
    contentType: str
    durationSeconds: float
    width: int
    height: int
    fps: float
    sizeBytes: int
    codec: str | None = Field(default=None, description="The video codec the file holds (h264, hevc, vp9, ...).")


class Job(BaseModel):
    """A job as clients see it."""

    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    id: str
    userId: str
    status: JobStatus
    prompt: str
    metadata: dict[str, Any]
    result: VideoResult | None
    retryCount: int
    maxRetries: int
    usedProvider: str | None
    usedModel: str | None
    generationTimeMs: int | None
    errorMessage: str | None
    costUsd: float | None = Field(
        default=None,
        description="What the video cost in US dollars, as the provider's price list estimates it "
        "(docs/providers.md); set once completed.",
    )
    createdAt: datetime
    updatedAt: datetime
    startedAt: datetime | None
    completedAt: datetime | None
    webhookUrl: str | None = Field(default=None, description="Where status changes are POSTed, when set.")
    webhookEvents: list[str] = Field(default_factory=list, description="The events POSTed; empty means all.")
    progressPercent: int = Field(description="Progress of the current attempt, 0-100.")
    progressStage: str = Field(
        description="Stage of the current attempt: `starting`, `rendering`, `storing`, then `completed` "
        "(a remote provider may name its own); empty while queued. "
        "Follow it live with `GET /api/v1/jobs/{id}/events`."
    )


def timestamp(stamp: Timestamp) -> datetime:
    """A protobuf timestamp as an aware UTC datetime."""
    return stamp.ToDatetime(tzinfo=UTC)


def optional_timestamp(message: Any, field: str) -> datetime | None:
    """The message's timestamp field, or None when it is unset."""
    return timestamp(getattr(message, field)) if message.HasField(field) else None


def job_from_proto(job: jobs_pb2.Job) -> Job:
    """The REST form of a job."""
    result = None
    if job.HasField("result"):
        r = job.result
        result = VideoResult(
            videoUrl=r.video_url,
            contentType=r.content_type,
            durationSeconds=r.duration_seconds,
            width=r.width,
            height=r.height,
            fps=r.fps,
            sizeBytes=r.size_bytes,
            codec=r.codec or None,
        )
    return Job(
        id=job.id,
        userId=job.user_id,
        status=STATUS_FROM_PROTO[job.status],
        prompt=job.prompt,
        metadata=json.loads(job.metadata_json or "{}"),
        result=result,
        retryCount=job.retry_count,
        maxRetries=job.max_retries,
        usedProvider=job.used_provider if job.HasField("used_provider") else None,
        usedModel=job.used_model if job.HasField("used_model") else None,
        generationTimeMs=job.generation_time_ms if job.HasField("generation_time_ms") else None,
        errorMessage=job.error_message if job.HasField("error_message") else None,
        costUsd=job.cost_usd if job.HasField("cost_usd") else None,
        createdAt=timestamp(job.created_at),
        updatedAt=timestamp(job.updated_at),
        startedAt=optional_timestamp(job, "started_at"),
        completedAt=optional_timestamp(job, "completed_at"),
        webhookUrl=job.webhook_url if job.HasField("webhook_url") else None,
        webhookEvents=list(job.webhook_events),
        progressPercent=job.progress_percent,
        progressStage=job.progress_stage,
    )
