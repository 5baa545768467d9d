"""Settings of the worker: its Celery slots, the built-in renderer's bounds, and plugins."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from services.core.settings import CoreSettings


class WorkerSettings(CoreSettings):
    """CoreSettings plus what the worker alone needs."""

    # It never checks API keys: the services it calls do.
    REQUIRES_API_KEY: ClassVar[bool] = False

    worker_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    # A Celery child whose resident memory peaked above this many MiB is replaced after its task
    # (Celery's worker_max_memory_per_child): what a large render left behind is given back. 0: never.
    worker_max_memory_per_child_mb: Annotated[int, Field(ge=0, le=65_536)] = 512
    # A failed attempt's retry waits base * 2^retries seconds, at most max, with full jitter when on.
    job_retry_backoff_base: Annotated[float, Field(gt=0)] = 60
    job_retry_backoff_max: Annotated[float, Field(gt=0)] = 3600
    job_retry_jitter: bool = True
    worker_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "worker"
    # How often a running job reports progress, which is also how soon it notices a cancel.
    worker_progress_interval: Annotated[float, Field(gt=0, le=60)] = 0.5
    # A running attempt reports at least this often (its heartbeat), whatever its provider does;
    # keep it well under the jobs service's JOB_LEASE_SECONDS.
    worker_heartbeat_interval: Annotated[float, Field(gt=0, le=300)] = 10.0
    worker_stats_timeout: Annotated[float, Field(gt=0, le=30)] = 1.0
    # Deadline of each call to the jobs service.
    worker_rpc_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    # How long an attempt's outcome (and its provider choice) is asked again while the jobs or
    # providers service, or their database, is down: an outage shorter than this burns no attempt.
    worker_outage_patience: Annotated[float, Field(ge=0, le=3600)] = 600.0
    # A worker routes from a table of provider health that it syncs with the providers service at
    # most this often, batching into each sync how its calls went (docs/benchmarks.md).
    worker_routing_table_ttl: Annotated[float, Field(gt=0, le=60)] = 1.0
