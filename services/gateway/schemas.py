"""The REST shapes of contract.md, with examples for the OpenAPI document."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from services.core.generators.registry import NAME_PATTERN
from services.core.models import WEBHOOK_EVENTS
from services.core.webhooks import URL_MAX_CHARS, events_problem, url_problem
from videogen.v1 import jobs_pb2, providers_pb2

USER_ID = r"^[A-Za-z0-9_.:@-]{1,128}$"
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,255}$"
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


def _json_number(value: object) -> object:
    """Only a JSON number is a number: pydantic's lax mode would take `true` or `"3"` as well."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


JsonNumber = BeforeValidator(_json_number)
# Deeper metadata could be stored but not answered back: the JSON serializer stops at 255 levels.
METADATA_MAX_DEPTH = 64


def _shallow(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """metadata, if its objects and arrays nest at most METADATA_MAX_DEPTH deep."""
    pending: list[tuple[Any, int]] = [(metadata, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > METADATA_MAX_DEPTH:
                raise ValueError(f"must be nested at most {METADATA_MAX_DEPTH} deep")
            pending.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return metadata


class Status(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _webhook_url(url: str | None) -> str | None:
    if url is not None and (problem := url_problem(url)) is not None:
        raise ValueError(problem)
    return url


def _webhook_events(events: list[str] | None, info: ValidationInfo) -> list[str] | None:
    if not events:
        return events
    if (problem := events_problem(events)) is not None:
        raise ValueError(problem)
    if "webhookUrl" in info.data and info.data["webhookUrl"] is None:
        raise ValueError("needs webhookUrl")
    return events


# services.core.models.WEBHOOK_EVENTS, spelled out for the OpenAPI document (a test holds them equal).
WebhookEvent = Literal["job.queued", "job.processing", "job.retrying", "job.completed", "job.failed", "job.cancelled"]


class JobCreate(BaseModel):
    """A new video generation job."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "userId": "user-123",
                    "prompt": "Create a video of a sunset over the ocean",
                    "metadata": {"priority": "high", "durationSeconds": 4},
                    "maxRetries": 3,
                }
            ]
        },
    )

    userId: Annotated[
        str | None,
        Field(
            pattern=USER_ID,
            description="1-128 characters of [A-Za-z0-9_.:@-]. With a per-user key it may be omitted (the key's "
            "user) and must otherwise be the key's user (403); with the admin key it is required.",
        ),
    ] = None
    prompt: Annotated[str, Field(min_length=1, max_length=4000, description="1-4000 characters, not blank")]
    metadata: Annotated[dict[str, Any] | None, AfterValidator(_shallow)] = Field(
        default=None,
        description=f"A JSON object of at most 16 KiB, nested at most {METADATA_MAX_DEPTH} deep. "
        "`priority`: high | low; `provider`, `model`, `durationSeconds`, `width`, `height`, `fps` "
        "are read by the providers; `durationSeconds` (4 when absent) is also what the daily video-seconds "
        "quota charges (docs/quotas.md).",
    )
    maxRetries: Annotated[int, Field(ge=0, le=10), JsonNumber] = 3
    webhookUrl: Annotated[str | None, Field(max_length=URL_MAX_CHARS), AfterValidator(_webhook_url)] = Field(
        default=None,
        description="Each status change of the job is POSTed here, signed (docs/webhooks.md): an absolute "
        "http or https URL with a host, at most 2048 characters, without user or password.",
        examples=["https://example.com/hooks/videogen"],
    )
    webhookEvents: Annotated[list[WebhookEvent] | None, AfterValidator(_webhook_events)] = Field(
        default=None,
        description="Only these events are POSTed (all when absent or empty): "
        + ", ".join(f"`{event}`" for event in WEBHOOK_EVENTS)
        + ". Needs `webhookUrl`.",
        examples=[["job.completed", "job.failed"]],
    )


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
    status: Status
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


class JobList(BaseModel):
    """One page of jobs, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"jobs": [JOB_EXAMPLE], "total": 1, "skip": 0, "take": 20}]}
    )

    jobs: list[Job]
    total: int
    skip: int
    take: int


class ProviderStatus(BaseModel):
    """Health, latency and cost of one provider."""

    provider: str
    status: str
    lastCheckedAt: datetime | None
    consecutiveFailures: int
    avgResponseTimeMs: float
    costPerRequest: float
    models: list[str]


class ProvidersStatus(BaseModel):
    """Every configured provider."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "providers": [
                        {
                            "provider": "local",
                            "status": "healthy",
                            "lastCheckedAt": "2026-11-26T10:00:00+00:00",
                            "consecutiveFailures": 0,
                            "avgResponseTimeMs": 1.2,
                            "costPerRequest": 0.0,
                            "models": ["local-pyav-h264-v1"],
                        }
                    ]
                }
            ]
        }
    )

    providers: list[ProviderStatus]


class ProviderTest(BaseModel):
    """Probe one provider now."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"provider": "local", "timeout": 30}]})

    provider: Annotated[str, Field(pattern=NAME_PATTERN, description="A provider name such as `local`")]
    timeout: Annotated[float, Field(ge=1, le=300), JsonNumber] = 30


class ProviderTestResult(BaseModel):
    """What the probe showed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"provider": "local", "success": True, "status": "healthy", "responseTimeMs": 1.4, "error": None}
            ]
        }
    )

    provider: str
    success: bool
    status: str
    responseTimeMs: float
    error: str | None


class Alive(BaseModel):
    """The gateway process runs."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "alive"}]})

    status: str = "alive"


class Component(BaseModel):
    """One dependency of readiness."""

    status: str
    latencyMs: float | None


class Readiness(BaseModel):
    """Whether every dependency answers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "components": {
                        name: {"status": "up", "latencyMs": 1.1}
                        for name in ("database", "redis", "jobs", "providers", "worker")
                    },
                }
            ]
        }
    )

    status: str
    components: dict[str, Component]


class Problem(BaseModel):
    """An error answer."""

    detail: Any


class RateLimitProblem(Problem):
    """A 429: which limit, and when to try again (also in the Retry-After header). A quota
    (docs/quotas.md) adds its `max`, the user's `current` use, and what this job `requested`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "detail": "quota jobs_in_flight: 10 of 10 jobs in flight used, this job needs 1; retry after 5 s",
                    "limit": "jobs_in_flight",
                    "max": 10,
                    "current": 10,
                    "requested": 1,
                    "retryAfterSeconds": 5,
                },
                {
                    "detail": "quota video_seconds_per_day: 58 of 60 video-seconds today (UTC) used, this job "
                    "needs 4; retry after 41234 s",
                    "limit": "video_seconds_per_day",
                    "max": 60,
                    "current": 58,
                    "requested": 4,
                    "retryAfterSeconds": 41234,
                },
                {
                    "detail": "rate limit: at most 600 jobs per minute per user (bursts of 100); retry after 1 s",
                    "limit": "jobs_per_minute",
                    "retryAfterSeconds": 1,
                },
            ]
        }
    )

    limit: str = Field(description="`jobs_per_minute` (rate limit), `jobs_in_flight` or `video_seconds_per_day`")
    max: float | None = Field(default=None, description="A quota's limit (jobs, or video-seconds per UTC day)")
    current: float | None = Field(default=None, description="What the user holds against the quota now")
    requested: float | None = Field(default=None, description="What this job would add (1 job, or its seconds)")
    retryAfterSeconds: int = Field(description="Seconds to wait, as in Retry-After")


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _optional_time(message: Any, field: str) -> datetime | None:
    return _time(getattr(message, field)) if message.HasField(field) else None


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
        status=Status(jobs_pb2.JobStatus.Name(job.status).removeprefix("JOB_STATUS_").lower()),
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
        createdAt=_time(job.created_at),
        updatedAt=_time(job.updated_at),
        startedAt=_optional_time(job, "started_at"),
        completedAt=_optional_time(job, "completed_at"),
        webhookUrl=job.webhook_url if job.HasField("webhook_url") else None,
        webhookEvents=list(job.webhook_events),
        progressPercent=job.progress_percent,
        progressStage=job.progress_stage,
    )


def health_name(value: int) -> str:
    """healthy | degraded | unhealthy."""
    return (
        providers_pb2.ProviderHealth.Name(providers_pb2.ProviderHealth.ValueType(value))
        .removeprefix("PROVIDER_HEALTH_")
        .lower()
    )


def provider_from_proto(status: providers_pb2.ProviderStatus) -> ProviderStatus:
    """The REST form of a provider's status."""
    return ProviderStatus(
        provider=status.provider,
        status=health_name(status.status),
        lastCheckedAt=_optional_time(status, "last_checked_at"),
        consecutiveFailures=status.consecutive_failures,
        avgResponseTimeMs=status.avg_response_time_ms,
        costPerRequest=status.cost_per_request,
        models=list(status.models),
    )
