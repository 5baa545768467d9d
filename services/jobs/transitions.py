"""The one way a job changes: a conditional UPDATE in a transaction that records the change's
webhook delivery, then, after the commit, tells live watchers; a change that matches no row says why."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn, Protocol

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.job.status import JobStatus
from services.core.models import Job
from services.jobs import repository
from services.jobs.domain import IllegalTransition, JobNotFound, RetriesExhausted, StaleAttempt
from services.jobs.webhooks.outbox import WebhookOutbox


class JobChanges(Protocol):
    """Told of every committed change of a job (services/jobs/live/events.py publishes it)."""

    async def publish(self, job: Job) -> None:
        """Never raises: a failure is the sink's to log."""


def on_attempt(attempt: int | None) -> list[ColumnElement[bool]]:
    """The condition that fences a worker to its own attempt (none when it names none)."""
    return [] if attempt is None else [Job.retry_count == attempt]


def owned_by(owner: str | None) -> list[ColumnElement[bool]]:
    """The condition that limits a caller to its user's jobs (none for the admin)."""
    return [] if owner is None else [Job.user_id == owner]


def visible(job: Job | None, owner: str | None) -> bool:
    """Whether the caller may see the job: another user's job is as good as unknown."""
    return job is not None and (owner is None or job.user_id == owner)


async def visible_job(session: AsyncSession, job_id: str, owner: str | None) -> Job:
    """The job, or JobNotFound when there is none the caller may see."""
    job = await repository.get_job(session, job_id)
    if job is None or not visible(job, owner):
        raise JobNotFound(job_id)
    return job


class Transitions:
    """Moves jobs between statuses for the use cases of jobs.service and jobs.attempts."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        webhooks: WebhookOutbox | None = None,
        changes: JobChanges | None = None,
    ) -> None:
        self._sessions = sessions
        self._webhooks = webhooks
        self._changes = changes

    async def announce(self, session: AsyncSession, job: Job, event: str) -> None:
        """In the change's transaction: the job's webhook delivery of event, if it wants one."""
        if self._webhooks is not None:
            await self._webhooks.record(session, job, event)

    async def changed(self, job: Job) -> None:
        """After the commit: live watchers learn of the change."""
        if self._changes is not None:
            await self._changes.publish(job)

    async def move(
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
        """job_id from_statuses to values (where extra holds too), with event's delivery; else why not.

        Watchers hear of it only when a client sees it: a heartbeat that repeats the progress
        already stored renews the lease without a live event."""
        async with self._sessions.begin() as session:
            found = await repository.transition_seen(
                session, job_id, from_statuses=from_statuses, values=values, extra=extra
            )
            if found is None:
                await refuse(session, job_id, action, attempt=attempt, owner=owner)
            job, seen = found
            if event is not None:
                await self.announce(session, job, event)
        if seen:
            await self.changed(job)
        return job


async def refuse(
    session: AsyncSession, job_id: str, action: str, *, attempt: int | None = None, owner: str | None = None
) -> NoReturn:
    """Raises why a conditional change of the job matched no row."""
    job = await visible_job(session, job_id, owner)
    if attempt is not None and action != "start" and job.retry_count != attempt:
        raise StaleAttempt(job_id, attempt, job.retry_count)
    if action == "retry" and job.status == JobStatus.PROCESSING:
        raise RetriesExhausted(job_id, job.max_retries)
    if action == "start" and job.status == JobStatus.QUEUED:
        raise IllegalTransition(job_id, "start this attempt of", f"queued for attempt {job.retry_count + 1}")
    raise IllegalTransition(job_id, action, job.status)
