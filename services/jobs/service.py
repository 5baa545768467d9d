"""The jobs use cases: each one a transaction, committed here and nowhere else."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn, Protocol

from sqlalchemy import ColumnElement, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.egress import Egress
from services.core.errors import InvalidArgument
from services.core.job.result import VideoResult
from services.core.job.status import ACTIVE, FINAL, JobStatus
from services.core.logging import get_logger
from services.core.models import Job
from services.core.storage.base import InvalidStorageKey, MediaStorage
from services.jobs import repository
from services.jobs.batching import CreateBatcher
from services.jobs.dispatch.dispatcher import Dispatcher
from services.jobs.domain import (
    IdempotencyConflict,
    IllegalTransition,
    JobFilter,
    JobNotFound,
    NewJob,
    RetriesExhausted,
    StaleAttempt,
    validate_webhook_target,
)
from services.jobs.quotas import Quota, enforce_quota
from services.jobs.ratelimit import CreationLimiter
from services.jobs.webhooks.outbox import WebhookOutbox

log = get_logger(__name__)


@dataclass(frozen=True)
class Completion:
    """What a worker reports when a job's video is stored."""

    result: VideoResult
    used_provider: str
    used_model: str
    generation_time_ms: int
    cost_usd: float | None = None


class JobChanges(Protocol):
    """Told of every committed change of a job (services/jobs/live/events.py publishes it)."""

    async def publish(self, job: Job) -> None:
        """Never raises: a failure is the sink's to log."""


@dataclass(frozen=True)
class Created:
    """The job a create answers, and whether it was created before (an idempotent replay)."""

    job: Job
    replayed: bool


def _on_attempt(attempt: int | None) -> list[ColumnElement[bool]]:
    """The condition that fences a worker to its own attempt (none when it names none)."""
    return [] if attempt is None else [Job.retry_count == attempt]


def _owned_by(owner: str | None) -> list[ColumnElement[bool]]:
    """The condition that limits a caller to its user's jobs (none for the admin)."""
    return [] if owner is None else [Job.user_id == owner]


def _visible(job: Job | None, owner: str | None) -> bool:
    """Whether the caller may see the job: another user's job is as good as unknown."""
    return job is not None and (owner is None or job.user_id == owner)


class JobsService:
    """Creates, reads and moves jobs; the state machine holds in the database."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher | None = None,
        storage: MediaStorage | None = None,
        limiter: CreationLimiter | None = None,
        quota: Quota | None = None,
        reads: async_sessionmaker[AsyncSession] | None = None,
        batcher: CreateBatcher | None = None,
        changes: JobChanges | None = None,
        webhooks: WebhookOutbox | None = None,
        egress: Egress | None = None,
    ) -> None:
        self._webhooks = webhooks
        # Where a new job's webhook may point (None: anywhere).
        self._egress = egress
        self._sessions = sessions
        # Single-statement reads go without BEGIN/ROLLBACK round trips when given autocommit sessions.
        self._reads = reads or sessions
        # Plain creates arriving together share one INSERT (services/jobs/batching.py).
        self._batcher = batcher
        self._dispatcher = dispatcher
        self._storage = storage
        self._limiter = limiter
        self._changes = changes
        self._quota = quota or Quota()

    async def create_job(self, new: NewJob, *, request_id: str | None = None) -> Created:
        """Stores a new queued job, then publishes its message (after the commit, never before).

        The row is born claimed (enqueued_at set); when the publish fails the claim is released
        and the dispatcher publishes it on a later round. With an idempotency key the user used
        before, answers that job (replayed) when the request is the same, else IdempotencyConflict.
        A user over the creation rate limit gets RateLimited, over a quota QuotaExceeded (checked
        in this transaction, under the user's lock), a webhook aimed at a forbidden address
        InvalidArgument, and nothing is stored."""
        if self._limiter is not None:
            await self._limiter.take(new.user_id)
        if self._egress is not None:
            await validate_webhook_target(new.webhook_url, self._egress)
        if self._batcher is not None and self._plain(new):
            return await self._created(await self._batcher.insert(new), request_id)
        async with self._sessions.begin() as session:
            await enforce_quota(session, new, self._quota)
            job = await repository.insert_job(session, new, claimed=self._dispatcher is not None)
            if job is None:
                assert new.idempotency_key is not None
                first = await repository.job_by_idempotency_key(session, new.user_id, new.idempotency_key)
                if first is None:
                    # The first job was deleted in between: the key names nothing any more.
                    raise IdempotencyConflict(new.idempotency_key)
                if first.request_fingerprint != new.fingerprint:
                    raise IdempotencyConflict(new.idempotency_key)
                log.info("job.create_replayed", job_id=first.id, user_id=first.user_id)
                return Created(first, replayed=True)
            await self._announce(session, job, "job.queued")
        return await self._created(job, request_id)

    async def _created(self, job: Job, request_id: str | None) -> Created:
        """After a new job's commit: watchers learn of it and its message is published."""
        log.info("job.created", job_id=job.id, user_id=job.user_id, queue=job.queue)
        await self._changed(job)
        if self._dispatcher is not None:
            await self._dispatcher.publish_new(job.id, job.queue, request_id=request_id)
        return Created(job, replayed=False)

    def _plain(self, new: NewJob) -> bool:
        """Whether a create can share a batch: no idempotency key, quota or webhook of its own."""
        return new.idempotency_key is None and new.webhook_url is None and not self._quota.enabled

    async def get_job(self, job_id: str, *, owner: str | None = None) -> Job:
        """The job, or JobNotFound (also when owner is set and the job is another user's)."""
        async with self._reads() as session:
            job = await repository.get_job(session, job_id)
        if job is None or not _visible(job, owner):
            raise JobNotFound(job_id)
        return job

    async def list_jobs(self, query: JobFilter) -> tuple[Sequence[Job], int]:
        """One page newest first and the total, read in one snapshot (one statement)."""
        async with self._reads() as session:
            return await repository.list_jobs(session, query)

    async def cancel_job(self, job_id: str, *, owner: str | None = None) -> Job:
        """queued | processing -> cancelled (only the owner's job when owner is set)."""
        job = await self._move(
            job_id,
            "cancel",
            ACTIVE,
            {"status": JobStatus.CANCELLED.value, "completed_at": func.now()},
            extra=_owned_by(owner),
            event="job.cancelled",
            owner=owner,
        )
        log.info("job.cancelled", job_id=job_id)
        if self._dispatcher is not None:
            # The worker cancels its own task when it notices; this reaches it when no worker will.
            await self._dispatcher.cancel_provider_task(job.id, job.provider_task)
        return job

    async def delete_job(self, job_id: str, *, owner: str | None = None) -> Job:
        """Deletes a job in a final state with its stored video, and answers it as it was (only
        the owner's job when owner is set)."""
        async with self._sessions.begin() as session:
            job = await repository.delete_job(session, job_id, statuses=FINAL, extra=_owned_by(owner))
            if job is None:
                await _refuse(session, job_id, "delete", owner=owner)
        key = VideoResult.from_stored(job.result).storage_key if job.result else ""
        if self._storage is not None and key:
            try:
                await asyncio.to_thread(self._storage.delete, key)
            except (OSError, InvalidStorageKey) as exc:
                # The row is gone either way; a file left behind is only disk, and logged.
                log.warning("job.video_not_deleted", job_id=job_id, key=key, error=repr(exc))
        log.info("job.deleted", job_id=job_id)
        return job

    async def start_job(self, job_id: str, *, worker_id: str, attempt: int | None = None) -> Job:
        """queued -> processing, for exactly one caller, and only on the given attempt."""
        values = {
            "status": JobStatus.PROCESSING.value,
            "started_at": func.now(),
            "worker_id": worker_id,
            "progress_percent": 0,
            "progress_stage": "starting",
            "heartbeat_at": func.now(),
        }
        job = await self._move(
            job_id, "start", {JobStatus.QUEUED}, values, extra=_on_attempt(attempt), event="job.processing"
        )
        log.info("job.started", job_id=job_id, worker_id=worker_id, attempt=job.retry_count + 1)
        return job

    async def report_progress(self, job_id: str, *, percent: int, stage: str, attempt: int | None = None) -> Job:
        """Records progress (and the attempt's heartbeat) while the job is processing."""
        values = {"progress_percent": percent, "progress_stage": stage, "heartbeat_at": func.now()}
        return await self._move(
            job_id, "report progress of", {JobStatus.PROCESSING}, values, extra=_on_attempt(attempt), attempt=attempt
        )

    async def record_provider_task(self, job_id: str, *, provider: str, task_id: str, attempt: int | None) -> Job:
        """Records the remote task the attempt started (and its heartbeat) while it processes."""
        task = {"provider": provider, "taskId": task_id, "attempt": attempt}
        values = {"provider_task": task, "heartbeat_at": func.now()}
        return await self._move(
            job_id, "record a task of", {JobStatus.PROCESSING}, values, extra=_on_attempt(attempt), attempt=attempt
        )

    async def complete_job(self, job_id: str, completion: Completion, *, attempt: int | None = None) -> Job:
        """processing -> completed, with the stored video."""
        values = {
            "status": JobStatus.COMPLETED.value,
            "result": completion.result.to_stored(),
            "used_provider": completion.used_provider,
            "used_model": completion.used_model,
            "generation_time_ms": completion.generation_time_ms,
            "cost_usd": completion.cost_usd,
            "completed_at": func.now(),
            "progress_percent": 100,
            "progress_stage": "completed",
            "error_message": None,
        }
        job = await self._move(
            job_id,
            "complete",
            {JobStatus.PROCESSING},
            values,
            extra=_on_attempt(attempt),
            attempt=attempt,
            event="job.completed",
        )
        log.info("job.completed", job_id=job_id, provider=completion.used_provider)
        return job

    async def fail_job(
        self, job_id: str, *, error: str, provider: str | None, model: str | None, attempt: int | None = None
    ) -> Job:
        """processing -> failed, with the reason."""
        values: dict[str, Any] = {"status": JobStatus.FAILED.value, "error_message": error, "completed_at": func.now()}
        if provider is not None:
            values["used_provider"] = provider
        if model is not None:
            values["used_model"] = model
        job = await self._move(
            job_id,
            "fail",
            {JobStatus.PROCESSING},
            values,
            extra=_on_attempt(attempt),
            attempt=attempt,
            event="job.failed",
        )
        log.info("job.failed", job_id=job_id, error=error)
        return job

    async def retry_job(self, job_id: str, *, error: str, retry_after: float = 0, attempt: int | None = None) -> Job:
        """processing -> queued for another attempt after retry_after seconds, while retries are left."""
        values = {
            "run_after": func.now() + timedelta(seconds=retry_after),
            "enqueued_at": None,
            "status": JobStatus.QUEUED.value,
            "retry_count": Job.retry_count + 1,
            "error_message": error,
            "worker_id": None,
            "heartbeat_at": None,
            "progress_percent": 0,
            "progress_stage": "",
        }
        async with self._sessions.begin() as session:
            job = await repository.transition(
                session,
                job_id,
                from_statuses={JobStatus.PROCESSING},
                values=values,
                extra=[Job.retry_count < Job.max_retries, *_on_attempt(attempt)],
            )
            if job is None:
                await _refuse(session, job_id, "retry", attempt=attempt)
            await self._announce(session, job, "job.retrying")
        await self._changed(job)
        log.info("job.retrying", job_id=job_id, retry_count=job.retry_count, retry_after=retry_after, error=error)
        return job

    async def record_telemetry(self, rows: Sequence[dict[str, Any]]) -> int:
        """Stores telemetry points together; a point naming an unknown job refuses them all."""
        async with self._sessions.begin() as session:
            named = {row["job_id"] for row in rows if row.get("job_id")}
            unknown = named - await repository.existing_job_ids(session, named)
            if unknown:
                raise InvalidArgument("points.job_id", f"unknown job {sorted(unknown)[0]!r}")
            return await repository.insert_metrics(session, rows)

    async def _announce(self, session: AsyncSession, job: Job, event: str) -> None:
        """In the change's transaction: the job's webhook delivery of event, if it wants one."""
        if self._webhooks is not None:
            await self._webhooks.record(session, job, event)

    async def _changed(self, job: Job) -> None:
        """After the commit: live watchers learn of the change."""
        if self._changes is not None:
            await self._changes.publish(job)

    async def _move(
        self,
        job_id: str,
        action: str,
        from_statuses: Iterable[JobStatus],
        values: dict[str, Any],
        extra: Iterable[ColumnElement[bool]] = (),
        attempt: int | None = None,
        event: str | None = None,
        owner: str | None = None,
    ) -> Job:
        async with self._sessions.begin() as session:
            job = await repository.transition(session, job_id, from_statuses=from_statuses, values=values, extra=extra)
            if job is None:
                await _refuse(session, job_id, action, attempt=attempt, owner=owner)
            if event is not None:
                await self._announce(session, job, event)
        await self._changed(job)
        return job


async def _refuse(
    session: AsyncSession, job_id: str, action: str, *, attempt: int | None = None, owner: str | None = None
) -> NoReturn:
    """Raises why a conditional change of the job matched no row."""
    job = await repository.get_job(session, job_id)
    if job is None or not _visible(job, owner):
        raise JobNotFound(job_id)
    if attempt is not None and action != "start" and job.retry_count != attempt:
        raise StaleAttempt(job_id, attempt, job.retry_count)
    if action == "retry" and job.status == JobStatus.PROCESSING:
        raise RetriesExhausted(job_id, job.max_retries)
    if action == "start" and job.status == JobStatus.QUEUED:
        raise IllegalTransition(job_id, "start this attempt of", f"queued for attempt {job.retry_count + 1}")
    raise IllegalTransition(job_id, action, job.status)
