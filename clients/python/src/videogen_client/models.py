"""The API's shapes as typed, read-only Python objects (docs/contract.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class VideoResult:
    """A completed job's video: `video_url` is a path under the API's base URL (signed, expiring)."""

    video_url: str
    content_type: str
    duration_seconds: float
    width: int
    height: int
    fps: float
    size_bytes: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VideoResult:
        return cls(
            video_url=data["videoUrl"],
            content_type=data.get("contentType", "video/mp4"),
            duration_seconds=float(data.get("durationSeconds", 0)),
            width=int(data.get("width", 0)),
            height=int(data.get("height", 0)),
            fps=float(data.get("fps", 0)),
            size_bytes=int(data.get("sizeBytes", 0)),
        )


@dataclass(frozen=True)
class Job:
    """A video generation job, as the API answers it."""

    id: str
    user_id: str
    status: str
    prompt: str
    metadata: dict[str, Any]
    result: VideoResult | None
    retry_count: int
    max_retries: int
    used_provider: str | None
    used_model: str | None
    error_message: str | None
    progress_percent: int
    progress_stage: str
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def final(self) -> bool:
        """Whether the job reached a final state (completed, failed or cancelled)."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        result = data.get("result")
        return cls(
            id=data["id"],
            user_id=data.get("userId", ""),
            status=data["status"],
            prompt=data.get("prompt", ""),
            metadata=data.get("metadata") or {},
            result=VideoResult.from_json(result) if result else None,
            retry_count=int(data.get("retryCount", 0)),
            max_retries=int(data.get("maxRetries", 0)),
            used_provider=data.get("usedProvider"),
            used_model=data.get("usedModel"),
            error_message=data.get("errorMessage"),
            progress_percent=int(data.get("progressPercent") or 0),
            progress_stage=data.get("progressStage") or "",
            created_at=_time(data.get("createdAt")),
            updated_at=_time(data.get("updatedAt")),
            started_at=_time(data.get("startedAt")),
            completed_at=_time(data.get("completedAt")),
            raw=data,
        )


@dataclass(frozen=True)
class JobPage:
    """One page of a list, newest first; `next_cursor` continues it (None on the last page)."""

    jobs: list[Job]
    total: int
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobPage:
        return cls(
            jobs=[Job.from_json(job) for job in data["jobs"]],
            total=int(data["total"]),
            next_cursor=data.get("nextCursor"),
        )


@dataclass(frozen=True)
class JobEvent:
    """One event of a job's stream: its type (`job.progress`...), id, and the whole job."""

    type: str
    id: int | None
    job: Job


@dataclass(frozen=True)
class JobAttempt:
    """One attempt of a job that ended: completed, failed, cancelled or retried."""

    attempt: int
    outcome: str
    provider: str | None
    error: str | None
    started_at: datetime | None
    ended_at: datetime | None
    # Only with the admin key.
    worker_id: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobAttempt:
        return cls(
            attempt=int(data["attempt"]),
            outcome=data["outcome"],
            provider=data.get("provider"),
            error=data.get("error"),
            started_at=_time(data.get("startedAt")),
            ended_at=_time(data.get("endedAt")),
            worker_id=data.get("workerId"),
        )


@dataclass(frozen=True)
class ProviderStatus:
    """A provider's health, latency and cost."""

    provider: str
    status: str
    consecutive_failures: int
    avg_response_time_ms: float
    cost_per_request: float
    models: list[str]
    last_checked_at: datetime | None
    # closed | open (skipped until circuit_open_until) | half-open (the next job tries it).
    circuit: str = "closed"
    circuit_open_until: datetime | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProviderStatus:
        return cls(
            provider=data["provider"],
            status=data["status"],
            consecutive_failures=int(data.get("consecutiveFailures", 0)),
            avg_response_time_ms=float(data.get("avgResponseTimeMs", 0)),
            cost_per_request=float(data.get("costPerRequest", 0)),
            models=list(data.get("models") or []),
            last_checked_at=_time(data.get("lastCheckedAt")),
            circuit=str(data.get("circuit") or "closed"),
            circuit_open_until=_time(data.get("circuitOpenUntil")),
        )
