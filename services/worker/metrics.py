"""Job metrics of the Celery children; PROMETHEUS_MULTIPROC_DIR makes them multi-process."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

JOB_PROCESSING_TIME = Histogram(
    "job_processing_time_seconds",
    "Time a worker spent on one attempt of a job, from start to its outcome.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
JOB_COMPLETION = Counter(
    "job_completion_rate",
    "Jobs that reached a final state on a worker, by status.",
    ["status"],
)
JOB_ATTEMPTS = Counter(
    "job_attempts_total",
    "Attempts a worker ran, by outcome (completed, failed, retried, cancelled, skipped).",
    ["outcome"],
)
