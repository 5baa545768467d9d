"""The database schema: jobs, provider health and telemetry metrics."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.core.ids import new_cuid

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
JOB_STATUSES = ("queued", "processing", "completed", "failed", "cancelled")
PROVIDER_STATUSES = ("healthy", "degraded", "unhealthy")
WEBHOOK_EVENTS = ("job.queued", "job.processing", "job.retrying", "job.completed", "job.failed", "job.cancelled")
DELIVERY_STATES = ("pending", "delivering", "delivered", "dead")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for migrations."""

    metadata = MetaData(naming_convention=NAMING)


class Job(Base):
    """A video generation job (the seed's Jobs table)."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_cuid)
    user_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    prompt: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, server_default=text("'{}'::jsonb"))
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    retry_count: Mapped[int] = mapped_column(Integer, server_default="0")
    max_retries: Mapped[int] = mapped_column(Integer, server_default="3")
    used_provider: Mapped[str | None] = mapped_column(String(64))
    used_model: Mapped[str | None] = mapped_column(String(128))
    generation_time_ms: Mapped[int | None] = mapped_column(BigInteger)
    error_message: Mapped[str | None] = mapped_column(Text)
    queue: Mapped[str] = mapped_column(String(32), server_default="default")
    progress_percent: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    progress_stage: Mapped[str] = mapped_column(String(64), server_default="")
    # The job's version and the id of its last event: a trigger (migration 0006) adds one at
    # every change a client can see.
    event_seq: Mapped[int] = mapped_column(BigInteger, server_default="1")
    worker_id: Mapped[str | None] = mapped_column(String(255))
    # When a queued job may be dispatched (now, or after a retry's backoff).
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # When the message of the current attempt was published; NULL until then.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The client's Idempotency-Key, and a digest of the request it came with.
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The last sign of life of the worker on the current attempt (StartJob, ReportProgress).
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where status changes are POSTed, and which events (empty: all of them).
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_events: Mapped[list[str]] = mapped_column(ARRAY(String(32)), server_default=text("'{}'::varchar[]"))
    # What the video cost in US dollars (routing's estimate), once completed (migration 0009).
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))
    # {"provider", "taskId", "attempt"}: the remote task of the current attempt, while one runs.
    provider_task: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # The creating request's W3C trace context, continued by every message of the job (tracing on only).
    traceparent: Mapped[str | None] = mapped_column(String(55))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        CheckConstraint("max_retries BETWEEN 0 AND 10", name="max_retries"),
        CheckConstraint("retry_count BETWEEN 0 AND max_retries", name="retry_count"),
        CheckConstraint("progress_percent BETWEEN 0 AND 100", name="progress_percent"),
        # Newest first, with the id as a tie-breaker, for every filter combination of the list.
        Index("ix_jobs_created", created_at.desc(), id.desc()),
        Index("ix_jobs_user_created", user_id, created_at.desc(), id.desc()),
        Index("ix_jobs_status_created", status, created_at.desc(), id.desc()),
        Index("ix_jobs_user_status_created", user_id, status, created_at.desc(), id.desc()),
        Index("ix_jobs_due", run_after, postgresql_where=text("status = 'queued' AND enqueued_at IS NULL")),
        Index(
            "ix_jobs_user_idempotency",
            user_id,
            idempotency_key,
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
        ),
        Index("ix_jobs_heartbeat", heartbeat_at, postgresql_where=text("status = 'processing'")),
        Index(
            "ix_jobs_waiting",
            queue,
            enqueued_at,
            postgresql_where=text("status = 'queued' AND enqueued_at IS NOT NULL"),
        ),
    )


class WebhookDelivery(Base):
    """One event to POST to a job's webhook, kept until delivered or dead (at least once)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_cuid)
    # Deliveries go with their job: each holds a copy of the job's JSON, which a delete removes.
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    # The Webhook-Id header: the same on every attempt, so receivers drop duplicates by it.
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    url: Mapped[str] = mapped_column(String(2048))
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    # When pending: the next attempt; when delivering: the end of the lease of the claimant.
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    # When the delivery (or its redelivery) was scheduled: retries stop WEBHOOK_RETRY_FOR_HOURS after it.
    scheduled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(_in("event_type", WEBHOOK_EVENTS), name="event_type"),
        CheckConstraint(_in("state", DELIVERY_STATES), name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index(
            "ix_webhook_deliveries_due", next_attempt_at, postgresql_where=text("state IN ('pending', 'delivering')")
        ),
        Index("ix_webhook_deliveries_job_created", job_id, created_at, id),
        Index("ix_webhook_deliveries_state_created", state, created_at.desc(), id.desc()),
    )


ATTEMPT_OUTCOMES = ("completed", "failed", "cancelled", "retried")


class JobAttempt(Base):
    """An attempt of a job that ended, and how: a trigger on jobs writes it when the job leaves
    `processing` (migration 0012), whatever wrote that change."""

    __tablename__ = "job_attempts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    # 1 for the first attempt (the job's retry_count + 1 while it ran).
    attempt: Mapped[int] = mapped_column(Integer)
    # The job's status after it (completed, failed, cancelled), or retried (queued again).
    outcome: Mapped[str] = mapped_column(String(16))
    worker_id: Mapped[str | None] = mapped_column(String(255))
    provider: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("outcome", ATTEMPT_OUTCOMES), name="outcome"),
        Index("ix_job_attempts_job_id_id", job_id, id),
    )


class QuotaDeletedUsage(Base):
    """Video-seconds of a user's jobs created on `day` (UTC) and deleted since: a trigger on jobs
    (migration 0007) keeps them, so that deleting a job gives no daily quota back."""

    __tablename__ = "quota_deleted_usage"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    video_seconds: Mapped[Decimal] = mapped_column(Numeric, server_default="0")


class JobCount(Base):
    """How many jobs a user has in one status: triggers on jobs keep it (migration 0011), so
    that a list's exact total is a sum of at most five rows per user, not a count of the jobs."""

    __tablename__ = "job_counts"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, server_default="0")


class ApiKey(Base):
    """A per-user API key (docs/security.md): only its SHA-256 is kept, never the key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_cuid)
    user_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(128))
    # Hex SHA-256 of the whole key: keys are 256 random bits, so a plain hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The key's first characters, to tell keys apart in lists.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_api_keys_user_created", user_id, created_at.desc(), id.desc()),)


class ProviderHealth(Base):
    """Health and cost of one video generation provider (the seed's Provider Health table)."""

    __tablename__ = "provider_health"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_cuid)
    provider: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default="healthy")
    last_checked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    consecutive_failures: Mapped[int] = mapped_column(Integer, server_default="0")
    avg_response_time_ms: Mapped[float] = mapped_column(Double, server_default="0")
    cost_per_request: Mapped[float] = mapped_column(Double, server_default="0")
    # While set and in the future, routing skips the provider (its circuit breaker is open).
    circuit_open_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, server_default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (CheckConstraint(_in("status", PROVIDER_STATUSES), name="status"),)


class Metric(Base):
    """One telemetry point (the seed's Metrics table)."""

    __tablename__ = "metrics"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_cuid)
    component: Mapped[str] = mapped_column(String(32))
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Double)
    tags: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint(_in("component", ("api", "worker", "database", "provider")), name="component"),
        Index("ix_metrics_component_metric_created", component, metric, created_at.desc()),
        Index("ix_metrics_job_id", job_id),
    )
