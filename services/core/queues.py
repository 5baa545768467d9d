"""The Celery queues; a job's options pick one (services.core.job.options.JobOptions.queue)."""

from __future__ import annotations

HIGH_PRIORITY = "high_priority"
DEFAULT = "default"
LOW_PRIORITY = "low_priority"
QUEUES = (HIGH_PRIORITY, DEFAULT, LOW_PRIORITY)
