"""Settings of the jobs service."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from services.core.job import rules
from services.core.settings import CoreSettings
from services.core.webhooks import WebhookSecretSetting

# Where webhooks may go to loopback and private addresses unless WEBHOOK_ALLOW_PRIVATE_TARGETS says.
_PRIVATE_TARGETS_BY_DEFAULT = ("development", "test")


class JobsSettings(CoreSettings):
    """CoreSettings plus the limits of the jobs API."""

    jobs_default_max_retries: Annotated[int, Field(ge=0, le=rules.MAX_RETRIES)] = rules.DEFAULT_MAX_RETRIES
    jobs_list_max_skip: Annotated[int, Field(ge=0)] = rules.LIST_MAX_SKIP
    jobs_metadata_max_bytes: Annotated[int, Field(ge=2, le=1024 * 1024)] = rules.METADATA_MAX_BYTES
    # The dispatcher: how often it publishes due jobs, how many per round, and after how long
    # a waiting low (default) job is promoted to default (high) so it is never starved.
    dispatch_interval: Annotated[float, Field(gt=0, le=60)] = 1.0
    dispatch_batch: Annotated[int, Field(ge=1, le=10_000)] = 200
    priority_aging_seconds: Annotated[float, Field(gt=0)] = 300.0
    # A processing job whose worker sent no heartbeat for this long is taken back (requeued for
    # its next attempt, or failed when no retry is left); WORKER_HEARTBEAT_INTERVAL is well under it.
    job_lease_seconds: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    # A queued job whose message went out this long ago while its queue is empty in Redis lost
    # its message (a Redis restart, a dead worker) and is published again.
    orphan_sweep_after_seconds: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    # A queued job whose message went out this long ago is published again whatever the queues
    # hold (a message lost behind a backlog; high-priority jobs are never promoted). The copy
    # names the same attempt: whichever a worker takes second is skipped.
    dispatch_republish_after_seconds: Annotated[float, Field(gt=0, le=86_400)] = 900.0
    # Jobs one user may create per minute (0: no limit), and at once after a quiet spell.
    jobs_rate_limit_per_minute: Annotated[int, Field(ge=0, le=1_000_000)] = 600
    jobs_rate_limit_burst: Annotated[int, Field(ge=1, le=100_000)] = 100
    # WatchJob (and the gateway's SSE route): streams one process follows at most, seconds of
    # quiet before a keep-alive, and how often the watched jobs are re-read in one query to make
    # good a pub/sub message Redis lost.
    jobs_watch_max_watchers: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    jobs_watch_keepalive_seconds: Annotated[float, Field(gt=0, le=300)] = 15.0
    jobs_watch_resync_seconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # Completed jobs older than this many days are deleted with their videos (0: kept forever),
    # checked every MEDIA_RETENTION_INTERVAL seconds, MEDIA_RETENTION_BATCH jobs per transaction.
    media_retention_days: Annotated[float, Field(ge=0, le=36_500)] = 0
    media_retention_interval: Annotated[float, Field(gt=0, le=86_400)] = 3600.0
    media_retention_batch: Annotated[int, Field(ge=1, le=10_000)] = 100
    # Per-user quotas, checked atomically at creation (0: no limit): jobs queued or processing at
    # once, and video-seconds (metadata.durationSeconds, 4 when absent) created per UTC day.
    quota_max_jobs_in_flight: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    quota_video_seconds_per_day: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0
    # The signing secrets of webhooks (docs/webhooks.md): one or two `whsec_…`, current first;
    # unset, the one secret is derived from SECRET_KEY.
    webhook_secret: WebhookSecretSetting = None
    # Whether a webhook may target loopback, private, link-local and other non-public addresses;
    # unset: yes with APP_ENV development or test, no in staging and production.
    webhook_allow_private_targets: bool
    # Webhooks (docs/webhooks.md): an attempt's timeout; the
    # backoff between attempts (base doubling up to max, with jitter); how long a delivery is
    # retried before it is dead; deliveries in flight at once; the backstop poll of due ones.
    webhook_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    webhook_retry_base_seconds: Annotated[float, Field(gt=0, le=86_400)] = 30.0
    webhook_retry_max_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0
    webhook_retry_for_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0
    webhook_concurrency: Annotated[int, Field(ge=1, le=1000)] = 16
    webhook_poll_interval: Annotated[float, Field(gt=0, le=60)] = 1.0
    # Fairness between receivers (docs/webhooks.md#fairness-between-receivers): attempts in flight
    # per origin (scheme, host, port) in one replica; failed attempts in a row that open an
    # origin's circuit (0: no breaker); seconds it stays open before one probe goes through.
    webhook_max_per_host: Annotated[int, Field(ge=1, le=1000)] = 4
    webhook_circuit_failures: Annotated[int, Field(ge=0, le=1000)] = 5
    webhook_circuit_cooldown_seconds: Annotated[float, Field(gt=0, le=86_400)] = 30.0

    @model_validator(mode="before")
    @classmethod
    def _private_targets_by_environment(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("webhook_allow_private_targets") in (None, ""):
            environment = data.get("app_env", "development")
            data = {**data, "webhook_allow_private_targets": environment in _PRIVATE_TARGETS_BY_DEFAULT}
        return data

    @model_validator(mode="after")
    def _webhook_retry_window(self) -> JobsSettings:
        if self.webhook_retry_max_seconds < self.webhook_retry_base_seconds:
            raise ValueError("WEBHOOK_RETRY_MAX_SECONDS must be at least WEBHOOK_RETRY_BASE_SECONDS")
        return self
