"""The jobs use cases: each one a transaction, committed here and nowhere else."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.egress import Egress
from services.core.job.result import VideoResult
from services.core.job.status import ACTIVE, FINAL, JobStatus
from services.core.logging import get_logger
from services.core.models import Job, JobAttempt
from services.core.storage.base import InvalidStorageKey, MediaStorage
from services.jobs import repository
from services.jobs.attempts import Attempts
from services.jobs.batching import CreateBatcher
from services.jobs.dispatch.dispatcher import Dispatcher
from services.jobs.domain import (
    IdempotencyConflict,
    JobFilter,
    NewJob,
    validate_webhook_target,
)
from services.jobs.hot import HotTransitions
from services.jobs.quotas import Quota, enforce_quota
from services.jobs.ratelimit import CreationLimiter
from services.jobs.transitions import JobChanges, Transitions, owned_by, refuse, visible_job
from services.jobs.webhooks.outbox import WebhookOutbox

log = get_logger(__name__)
# The most attempts ListJobAttempts answers (a job has at most MAX_RETRIES + 1, and a few requeues).
ATTEMPTS_LISTED = 100


@dataclass(frozen=True)
class Created:
    """The job a create answers, and whether it was created before (an idempotent replay)."""

    job: Job
    replayed: bool


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
        hot: HotTransitions | None = None,
    ) -> None:
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
        self._quota = quota or Quota()
        self._transitions = Transitions(sessions, webhooks, changes)
        # The workers' use cases, on the same transitions.
        self.attempts = Attempts(sessions, self._transitions, hot)

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
            await self._transitions.announce(session, job, "job.queued")
        return await self._created(job, request_id)

    async def _created(self, job: Job, request_id: str | None) -> Created:
        """After a new job's commit: its message is published, then watchers learn of it (the
        worker need not wait for them; a watcher drops an event older than one it has seen)."""
        log.info("job.created", job_id=job.id, user_id=job.user_id, queue=job.queue)
        if self._dispatcher is not None:
            # Shielded: a caller that gives up after the commit (a client's deadline) must not cut
            # the publish short, or the job would wait with no message until the orphan sweep.
            await asyncio.shield(self._dispatcher.publish_new(job.id, job.queue, request_id=request_id))
        await self._transitions.changed(job)
        return Created(job, replayed=False)

    def _plain(self, new: NewJob) -> bool:
        """Whether a create can share a batch: no idempotency key, quota or webhook of its own."""
        return new.idempotency_key is None and new.webhook_url is None and not self._quota.enabled

    async def get_job(self, job_id: str, *, owner: str | None = None) -> Job:
        """The job, or JobNotFound (also when owner is set and the job is another user's)."""
        async with self._reads() as session:
            return await visible_job(session, job_id, owner)

    async def job_attempts(self, job_id: str, *, owner: str | None = None) -> Sequence[JobAttempt]:
        """The job's ended attempts, oldest first; JobNotFound as get_job."""
        async with self._reads() as session:
            await visible_job(session, job_id, owner)
            return await repository.job_attempts(session, job_id, limit=ATTEMPTS_LISTED)

    async def list_jobs(self, query: JobFilter) -> repository.JobPage:
        """One page newest first and the total, read in one snapshot (one statement)."""
        async with self._reads() as session:
            return await repository.list_jobs(session, query)

    async def cancel_job(self, job_id: str, *, owner: str | None = None) -> Job:
        """queued | processing -> cancelled (only the owner's job when owner is set)."""
        job = await self._transitions.move(
            job_id,
            "cancel",
            ACTIVE,
            {"status": JobStatus.CANCELLED.value, "completed_at": func.now()},
            extra=owned_by(owner),
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
            job = await repository.delete_job(session, job_id, statuses=FINAL, extra=owned_by(owner))
            if job is None:
                await refuse(session, job_id, "delete", owner=owner)
        key = VideoResult.from_stored(job.result).storage_key if job.result else ""
        if self._storage is not None and key:
            try:
                await asyncio.to_thread(self._storage.delete, key)
            except (OSError, InvalidStorageKey) as exc:
                # The row is gone either way; a file left behind is only disk, and logged.
                log.warning("job.video_not_deleted", job_id=job_id, key=key, error=repr(exc))
        log.info("job.deleted", job_id=job_id)
        return job
