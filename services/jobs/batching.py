"""Concurrent creates share one INSERT: while one batch is on its way to PostgreSQL, the creates
that arrive meanwhile wait for the next, which takes them all in one round trip.

Nothing waits for a timer: an unloaded service sends each create alone, at once, and under load
the batches grow by themselves with the time a round trip takes. Only plain creates are batched
(JobsService.create_job decides): one with an idempotency key, a quota to check or a webhook to
record needs its own transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.logging import get_logger
from services.core.models import Job
from services.jobs import repository
from services.jobs.domain import NewJob
from services.jobs.hot import HotTransitions

log = get_logger(__name__)


class CreateBatcher:
    """Inserts queued jobs for many concurrent callers, at most max_batch in one statement."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        claimed: bool,
        max_batch: int = 128,
        hot: HotTransitions | None = None,
    ) -> None:
        self._sessions = sessions
        # The INSERT in hand-written SQL (services/jobs/hot.py), when given.
        self._hot = hot
        self._claimed = claimed
        self._max = max_batch
        self._waiting: list[tuple[NewJob, asyncio.Future[Job]]] = []
        self._flusher: asyncio.Task[None] | None = None
        # INSERT statements sent so far, and the jobs they held.
        self.statements = 0
        self.inserted = 0

    async def insert(self, new: NewJob) -> Job:
        """The job as stored, once the batch holding it has committed."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._waiting.append((new, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max], self._waiting[self._max :]
                await self._insert(batch)
        finally:
            self._flusher = None

    async def _insert(self, batch: Sequence[tuple[NewJob, asyncio.Future[Job]]]) -> None:
        try:
            news = [new for new, _ in batch]
            if self._hot is not None:
                jobs = await self._hot.insert_queued(news, claimed=self._claimed)
            else:
                async with self._sessions.begin() as session:
                    jobs = await repository.insert_jobs(session, news, claimed=self._claimed)
            self.statements += 1
            self.inserted += len(jobs)
        except Exception as exc:
            # Every caller of the batch gets the failure (UNAVAILABLE when the database is down).
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if len(batch) > 1:
            log.debug("jobs.batch_inserted", jobs=len(batch))
        for (_, future), job in zip(batch, jobs, strict=True):
            if not future.done():  # a caller that went away (cancelled) has its job anyway
                future.set_result(job)
