"""The workers' use cases: start an attempt, report on it, and end it (completed, failed or
retried), each fenced to the attempt the worker holds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.errors import InvalidArgument
from services.core.job.result import VideoResult
from services.core.job.status import JobStatus
from services.core.logging import get_logger
from services.core.models import Job
from services.jobs import repository
from services.jobs.domain import IllegalTransition
from services.jobs.hot import HotTransitions, Moved
from services.jobs.transitions import Transitions, on_attempt, refuse

log = get_logger(__name__)


@dataclass(frozen=True)
class Completion:
    """What a worker reports when a job's video is stored."""

    result: VideoResult
    used_provider: str
    used_model: str
    generation_time_ms: int
    cost_usd: float | None = None


class Attempts:
    """What a worker does to the job it holds."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], transitions: Transitions, hot: HotTransitions | None = None
    ) -> None:
        self._sessions = sessions
        self._transitions = transitions
        # StartJob's and CompleteJob's common case in hand-written SQL (services/jobs/hot.py).
        self._hot = hot

    async def start(
        self, job_id: str, *, worker_id: str, attempt: int | None = None, resumes: Sequence[str] = ()
    ) -> Job:
        """queued -> processing, for exactly one caller, and only on the given attempt; or the
        attempt this worker, or an earlier delivery of its message it names in resumes, started."""
        if self._hot is not None and attempt is not None:
            moved = await self._hot.start(job_id, worker_id=worker_id, attempt=attempt)
            if moved is not None:
                return await self._moved(moved, "job.started", worker_id=worker_id, attempt=attempt + 1)
        values = {
            "status": JobStatus.PROCESSING.value,
            "started_at": func.now(),
            "worker_id": worker_id,
            "progress_percent": 0,
            "progress_stage": "starting",
            "heartbeat_at": func.now(),
        }
        try:
            job = await self._transitions.move(
                job_id, "start", {JobStatus.QUEUED}, values, extra=on_attempt(attempt), event="job.processing"
            )
        except IllegalTransition as refused:
            # The same message asks again when an outage ate the answer (its deadline passed while
            # the start landed): the attempt it started is its answer, with a fresh heartbeat.
            if refused.status != JobStatus.PROCESSING.value or attempt is None:
                raise
            again = await self._started_by(job_id, worker_id=worker_id, attempt=attempt, resumes=resumes)
            if again is None:
                raise
            log.info(
                "job.start_replayed",
                job_id=job_id,
                worker_id=worker_id,
                attempt=again.retry_count + 1,
                earlier_deliveries=len(resumes),
            )
            return again
        log.info("job.started", job_id=job_id, worker_id=worker_id, attempt=job.retry_count + 1)
        return job

    async def _started_by(self, job_id: str, *, worker_id: str, attempt: int, resumes: Sequence[str]) -> Job | None:
        """The job, now this worker's with its heartbeat renewed, when this very worker (a
        message's id) or an earlier delivery of its message that gave up (resumes) started this
        attempt and it still processes; None otherwise (another message's copy is refused). The
        take-over is one conditional update: of two copies naming the same delivery, one wins."""
        fenced = [Job.worker_id.in_([worker_id, *resumes]), *on_attempt(attempt)]
        values = {"heartbeat_at": func.now(), "worker_id": worker_id}
        try:
            return await self._transitions.move(job_id, "start", {JobStatus.PROCESSING}, values, extra=fenced)
        except IllegalTransition:
            return None

    async def report_progress(self, job_id: str, *, percent: int, stage: str, attempt: int | None = None) -> Job:
        """Records progress (and the attempt's heartbeat) while the job is processing."""
        values = {"progress_percent": percent, "progress_stage": stage, "heartbeat_at": func.now()}
        return await self._processing(job_id, "report progress of", values, attempt)

    async def record_provider_task(self, job_id: str, *, provider: str, task_id: str, attempt: int | None) -> Job:
        """Records the remote task the attempt started (and its heartbeat) while it processes."""
        task = {"provider": provider, "taskId": task_id, "attempt": attempt}
        values = {"provider_task": task, "heartbeat_at": func.now()}
        return await self._processing(job_id, "record a task of", values, attempt)

    async def _moved(self, moved: Moved, logged: str, **fields: Any) -> Job:
        """After a hot transition's commit: the log line, and live watchers told when they see it."""
        log.info(logged, job_id=moved.job.id, **fields)
        if moved.seen:
            await self._transitions.changed(moved.job)
        return moved.job

    async def complete(self, job_id: str, completion: Completion, *, attempt: int | None = None) -> Job:
        """processing -> completed, with the stored video."""
        result = completion.result.to_stored()
        if self._hot is not None:
            moved = await self._hot.complete(
                job_id,
                result=result,
                used_provider=completion.used_provider,
                used_model=completion.used_model,
                generation_time_ms=completion.generation_time_ms,
                cost_usd=completion.cost_usd,
                attempt=attempt,
            )
            if moved is not None:
                return await self._moved(moved, "job.completed", provider=completion.used_provider)
        values = {
            "status": JobStatus.COMPLETED.value,
            "result": result,
            "used_provider": completion.used_provider,
            "used_model": completion.used_model,
            "generation_time_ms": completion.generation_time_ms,
            "cost_usd": completion.cost_usd,
            "completed_at": func.now(),
            "progress_percent": 100,
            "progress_stage": "completed",
            "error_message": None,
        }
        try:
            job = await self._processing(job_id, "complete", values, attempt, event="job.completed")
        except IllegalTransition:
            # A worker asks again when an outage ate the answer: the completion it made is its answer.
            landed = await self._completed_with(job_id, completion.result.storage_key)
            if landed is None:
                raise
            log.info("job.completion_replayed", job_id=job_id, attempt=attempt)
            return landed
        log.info("job.completed", job_id=job_id, provider=completion.used_provider)
        return job

    async def _completed_with(self, job_id: str, storage_key: str) -> Job | None:
        """The job, when it is completed with this very video (the key names the attempt)."""
        async with self._sessions() as session:
            job = await repository.get_job(session, job_id)
        stored = job.result if job is not None and job.status == JobStatus.COMPLETED else None
        return job if stored is not None and stored.get("storage_key") == storage_key else None

    async def fail(
        self, job_id: str, *, error: str, provider: str | None, model: str | None, attempt: int | None = None
    ) -> Job:
        """processing -> failed, with the reason."""
        values: dict[str, Any] = {"status": JobStatus.FAILED.value, "error_message": error, "completed_at": func.now()}
        if provider is not None:
            values["used_provider"] = provider
        if model is not None:
            values["used_model"] = model
        job = await self._processing(job_id, "fail", values, attempt, event="job.failed")
        log.info("job.failed", job_id=job_id, error=error)
        return job

    async def retry(self, job_id: str, *, error: str, retry_after: float = 0, attempt: int | None = None) -> Job:
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
                extra=[Job.retry_count < Job.max_retries, *on_attempt(attempt)],
            )
            if job is None:
                await refuse(session, job_id, "retry", attempt=attempt)
            await self._transitions.announce(session, job, "job.retrying")
        await self._transitions.changed(job)
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

    async def _processing(
        self, job_id: str, action: str, values: dict[str, Any], attempt: int | None, *, event: str | None = None
    ) -> Job:
        """Changes the job while its attempt (when named) is the one processing."""
        return await self._transitions.move(
            job_id, action, {JobStatus.PROCESSING}, values, extra=on_attempt(attempt), attempt=attempt, event=event
        )
