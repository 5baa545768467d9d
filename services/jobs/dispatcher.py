"""Publishes what PostgreSQL says is due: jobs whose message is missing and long waiters.

PostgreSQL is the source of truth and Redis only carries messages. Each round claims rows with
`FOR UPDATE SKIP LOCKED`, so any number of jobs replicas can dispatch side by side:
- a queued job with no message (its publish failed, or a retry's backoff has passed) is
  published on its queue;
- a job that waited longer than the ageing time on `low_priority` is re-published on
  `default`, and on `default` on `high_priority`, so that a stream of high-priority work never
  starves the rest. The message left behind names the same attempt, so whichever copy a worker
  takes first starts the job and the other is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db
from services.core.logging import get_logger
from services.core.tasks import GenerateVideo
from services.jobs.publisher import JobPublisher

log = get_logger(__name__)

_CLAIM_DUE = text(
    """
    UPDATE jobs SET enqueued_at = now()
    WHERE id IN (
        SELECT id FROM jobs
        WHERE status = 'queued' AND enqueued_at IS NULL AND run_after <= now()
        ORDER BY run_after LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING id, queue, retry_count
    """
)
_PROMOTE = text(
    """
    UPDATE jobs
    SET queue = CASE queue WHEN 'low_priority' THEN 'default' ELSE 'high_priority' END,
        enqueued_at = now()
    WHERE id IN (
        SELECT id FROM jobs
        WHERE status = 'queued' AND enqueued_at IS NOT NULL AND queue <> 'high_priority'
          AND enqueued_at < now() - make_interval(secs => :age)
        ORDER BY enqueued_at LIMIT :limit FOR UPDATE SKIP LOCKED)
    RETURNING id, queue, retry_count
    """
)
_RELEASE = text("UPDATE jobs SET enqueued_at = NULL WHERE id = :id AND status = 'queued' AND retry_count = :attempt")


@dataclass(frozen=True)
class DispatchPolicy:
    """How often to look, how much at once, and when a waiting job is promoted."""

    interval: float = 1.0
    batch: int = 200
    aging_seconds: float = 300.0


class Dispatcher:
    """One round at a time, or forever with run()."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], publisher: JobPublisher, policy: DispatchPolicy
    ) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._policy = policy
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Dispatches every interval until stop(); a database outage only delays it."""
        while not self._stopping.is_set():
            try:
                await self.dispatch_once()
            except Exception as exc:
                if not db.is_unavailable(exc):
                    log.exception("dispatch.failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._policy.interval):
                    await self._stopping.wait()

    def stop(self) -> None:
        """Ends run() after the round in progress."""
        self._stopping.set()

    async def dispatch_once(self) -> int:
        """Publishes due jobs and promotes long waiters; how many messages went out."""
        due = await self._claim(_CLAIM_DUE, {"limit": self._policy.batch})
        promoted = await self._claim(_PROMOTE, {"limit": self._policy.batch, "age": self._policy.aging_seconds})
        for job_id, queue, _attempt in promoted:
            log.info("job.promoted", job_id=job_id, queue=queue)
        sent = 0
        for job_id, queue, attempt in [*due, *promoted]:
            if await self._publisher.publish(GenerateVideo(job_id=job_id, attempt=attempt), queue=queue):
                sent += 1
            else:
                await self.release(job_id, attempt)
        return sent

    async def publish_new(self, job_id: str, queue: str, *, request_id: str | None) -> None:
        """Publishes a just-created (claimed) job; on failure leaves it to a later round."""
        payload = GenerateVideo(job_id=job_id, attempt=0, request_id=request_id)
        if not await self._publisher.publish(payload, queue=queue):
            try:
                await self.release(job_id, 0)
            except Exception:
                log.exception("job.release_failed", job_id=job_id)

    async def release(self, job_id: str, attempt: int) -> None:
        """Marks a job's message as not sent, so that a later round publishes it."""
        async with self._sessions.begin() as session:
            await session.execute(_RELEASE, {"id": job_id, "attempt": attempt})

    async def _claim(self, statement: object, params: dict[str, float]) -> list[tuple[str, str, int]]:
        async with self._sessions.begin() as session:
            rows = (await session.execute(statement, params)).all()  # type: ignore[call-overload]
        return [(row.id, row.queue, row.retry_count) for row in rows]
