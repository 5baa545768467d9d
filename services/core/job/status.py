"""Where a job is in its life: one enum for every service and the REST API."""

from __future__ import annotations

from enum import StrEnum

from videogen.v1 import jobs_pb2


class JobStatus(StrEnum):
    """queued -> processing -> completed | failed, or cancelled from queued or processing."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})
FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# The gRPC enum values of the statuses, both ways (JOB_STATUS_UNSPECIFIED names none).
STATUS_TO_PROTO = {status: jobs_pb2.JobStatus.Value(f"JOB_STATUS_{status.name}") for status in JobStatus}
STATUS_FROM_PROTO: dict[int, JobStatus] = {value: status for status, value in STATUS_TO_PROTO.items()}
FINAL_PROTO = frozenset(STATUS_TO_PROTO[status] for status in FINAL)
