"""Media retention: completed jobs older than MEDIA_RETENTION_DAYS are deleted with their videos.

A job is deleted whole, as DELETE /api/v1/jobs/{id} does, so that no job ever answers the URL of
a video that is gone. Each round claims a batch of expired jobs with `FOR UPDATE SKIP LOCKED`, so
any number of jobs replicas can sweep side by side; the videos are deleted first and the rows in
the same transaction after them. A video the store cannot delete now keeps its job for the next
round, and a crash in between leaves rows that the next round claims again: a stored video is
never left without its job, and a job is never left answering a deleted video for longer than
one round.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.logging import get_logger
from services.core.periodic import every
from services.core.runtime import Background
from services.core.storage.base import InvalidStorageKey, MediaStorage
from services.jobs.settings import JobsSettings

log = get_logger(__name__)
RETENTION_DELETED = Counter(
    "media_retention_deleted_total",
    "Completed jobs deleted with their videos because they were older than MEDIA_RETENTION_DAYS.",
)

_CLAIM_EXPIRED = text(
    """
    SELECT id, result->>'storage_key' AS storage_key FROM jobs
    WHERE status = 'completed' AND completed_at < now() - make_interval(secs => :age)
    ORDER BY completed_at LIMIT :limit FOR UPDATE SKIP LOCKED
    """
)
_DELETE = text("DELETE FROM jobs WHERE id = ANY(:ids)")


@dataclass(frozen=True)
class RetentionPolicy:
    """How old a completed job may get, how often to look, and how many to delete per transaction."""

    days: float
    interval: float = 3600.0
    batch: int = 100


class Retention:
    """One sweep at a time, or forever with run()."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], storage: MediaStorage, policy: RetentionPolicy
    ) -> None:
        self._sessions = sessions
        self._storage = storage
        self._policy = policy
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Sweeps every interval until stop(); a database outage only delays it."""
        await every(self._policy.interval, self._stopping, self._sweep_due, log=log, failed="retention.failed")

    async def _sweep_due(self) -> None:
        # A full batch deleted means more may be due: sweep again at once.
        while await self.sweep_once() == self._policy.batch and not self._stopping.is_set():
            pass

    def stop(self) -> None:
        """Ends run() after the sweep in progress."""
        self._stopping.set()

    async def sweep_once(self) -> int:
        """Deletes one batch of expired jobs and their videos; how many it deleted."""
        params = {"age": self._policy.days * 86_400, "limit": self._policy.batch}
        async with self._sessions.begin() as session:
            rows = (await session.execute(_CLAIM_EXPIRED, params)).all()
            deleted = [row.id for row in rows if await self._delete_video(row.id, row.storage_key)]
            if deleted:
                await session.execute(_DELETE, {"ids": deleted})
        if deleted:
            RETENTION_DELETED.inc(len(deleted))
            log.info("retention.deleted", jobs=len(deleted), job_ids=deleted, older_than_days=self._policy.days)
        return len(deleted)

    async def _delete_video(self, job_id: str, key: str | None) -> bool:
        """Whether the job's video is gone now (or it had none we could name)."""
        if not key:
            return True
        try:
            await asyncio.to_thread(self._storage.delete, key)
        except InvalidStorageKey:
            return True  # a key no backend ever wrote: nothing of ours to delete
        except OSError as exc:
            log.warning("retention.video_not_deleted", job_id=job_id, key=key, error=repr(exc))
            return False
        return True


def open_retention(
    settings: JobsSettings, sessions: async_sessionmaker[AsyncSession], storage: MediaStorage
) -> Background:
    """The sweep of MEDIA_RETENTION_DAYS, or nothing when it is 0 (keep forever). Cancelled on
    stop: a sweep cut short rolls back and is done again later."""
    if settings.media_retention_days <= 0:
        return Background()
    policy = RetentionPolicy(
        days=settings.media_retention_days,
        interval=settings.media_retention_interval,
        batch=settings.media_retention_batch,
    )
    return Background(loops=(("retention", Retention(sessions, storage, policy).run),))
