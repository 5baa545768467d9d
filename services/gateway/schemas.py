"""The REST shapes of contract.md, with examples for the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from services.core.job import rules
from services.core.job.public import JOB_EXAMPLE, Job
from services.core.models import WEBHOOK_EVENTS
from services.core.webhooks import URL_MAX_CHARS, events_problem, url_problem


def _json_number(value: object) -> object:
    """Only a JSON number is a number: pydantic's lax mode would take `true` or `"3"` as well."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


JsonNumber = BeforeValidator(_json_number)
# The query parameters of every list: a user, and a page of `take` from `skip`.
UserIdQuery = Annotated[str | None, Query(pattern=rules.USER_ID.pattern)]
Skip = Annotated[int, Query(ge=0, le=rules.LIST_MAX_SKIP, description="Items to skip")]
Take = Annotated[int, Query(ge=1, le=rules.TAKE_MAX, description=f"Page size, 1-{rules.TAKE_MAX}")]
ListCursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=rules.LIST_CURSOR_MAX_CHARS,
        pattern=rules.LIST_CURSOR.pattern,
        description="Keyset pagination: the `nextCursor` of the previous page of this list (same `userId` and "
        "`status`); the page starts right after that page's last job, however many were created since. "
        "`skip` must then be 0. Opaque and signed: an altered cursor, or one of other filters, is 422.",
    ),
]


def _shallow(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    """metadata, if its objects and arrays nest at most rules.JSON_MAX_DEPTH deep."""
    if (problem := rules.depth_problem(metadata)) is not None:
        raise ValueError(problem)
    return metadata


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
            pattern=rules.USER_ID.pattern,
            description="1-128 characters of [A-Za-z0-9_.:@-]. With a per-user key it may be omitted (the key's "
            "user) and must otherwise be the key's user (403); with the admin key it is required.",
        ),
    ] = None
    prompt: Annotated[
        str,
        Field(
            min_length=1,
            max_length=rules.PROMPT_MAX_CHARS,
            description=f"1-{rules.PROMPT_MAX_CHARS} characters, not blank",
        ),
    ]
    metadata: Annotated[dict[str, Any] | None, AfterValidator(_shallow)] = Field(
        default=None,
        description=f"A JSON object of at most 16 KiB, nested at most {rules.JSON_MAX_DEPTH} deep. "
        "`priority`: high | low; `provider`, `model`, `durationSeconds`, `width`, `height`, `fps` "
        "are read by the providers; `durationSeconds` (4 when absent) is also what the daily video-seconds "
        "quota charges (docs/quotas.md).",
    )
    maxRetries: Annotated[
        int | None,
        Field(
            ge=0,
            le=rules.MAX_RETRIES,
            description=f"0-{rules.MAX_RETRIES} retries after a failed attempt; the service's "
            "JOBS_DEFAULT_MAX_RETRIES (3 unless set) when absent.",
        ),
        JsonNumber,
    ] = None
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


class JobList(BaseModel):
    """One page of jobs, newest first."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"jobs": [JOB_EXAMPLE], "total": 1, "skip": 0, "take": 20, "nextCursor": None}]}
    )

    jobs: list[Job]
    total: int = Field(description="Jobs matching the filters over all pages (exact)")
    skip: int
    take: int
    nextCursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last page"
    )


class JobAttempt(BaseModel):
    """One attempt of a job that ended."""

    attempt: int = Field(description="1 for the first attempt")
    outcome: Literal["completed", "failed", "cancelled", "retried"] = Field(
        description="How it ended: the job's status after it, or `retried` (queued for another attempt)"
    )
    provider: str | None = Field(description="The provider it used, when known")
    error: str | None = Field(description="Why it failed or was retried")
    startedAt: datetime | None
    endedAt: datetime
    workerId: str | None = Field(description="The worker that ran it (node/pid/task); only for the admin key")


class JobAttempts(BaseModel):
    """A job's ended attempts, oldest first; the one running now is the job itself."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "attempts": [
                        {
                            "attempt": 1,
                            "outcome": "retried",
                            "provider": "runway",
                            "error": "runway: HTTP 503 Service Unavailable",
                            "startedAt": "2026-12-04T10:00:00+00:00",
                            "endedAt": "2026-12-04T10:00:41+00:00",
                            "workerId": None,
                        },
                        {
                            "attempt": 2,
                            "outcome": "completed",
                            "provider": "runway",
                            "error": None,
                            "startedAt": "2026-12-04T10:00:43+00:00",
                            "endedAt": "2026-12-04T10:01:30+00:00",
                            "workerId": None,
                        },
                    ]
                }
            ]
        }
    )

    attempts: list[JobAttempt]


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
