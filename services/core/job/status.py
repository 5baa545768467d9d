"""Where a job is in its life: one enum for every service and the REST API."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """queued -> processing -> completed | failed, or cancelled from queued or processing."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})
FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
