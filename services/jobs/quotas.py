"""Per-user quotas on job creation: jobs in flight, and video-seconds per UTC day.

Both are checked in the transaction that inserts the job, under a transaction-scoped advisory
lock on the user: two creates of one user queue on that lock, and the second one counts after
the first has committed (or rolled back), so two creates can never both pass the last unit.
Other users never wait on each other (save for a hash collision, which only serializes them).
The daily sum reads the user's jobs created today plus the seconds of those deleted since,
which a trigger keeps (migration 0007), so deleting a job gives nothing back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NoReturn

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.errors import InvalidArgument, ResourceExhausted
from services.core.generators.capabilities import DEFAULT_SECONDS
from services.core.logging import get_logger
from services.jobs import repository
from services.jobs.domain import NewJob

log = get_logger(__name__)

# What a job without metadata.durationSeconds is charged: what it is made at (JobOptions).
DEFAULT_VIDEO_SECONDS = DEFAULT_SECONDS
# When a job in flight may have finished: a client over the in-flight quota tries again soon.
IN_FLIGHT_RETRY_AFTER = 5.0
DURATION_FIELD = "metadata.durationSeconds"

REFUSALS = Counter("job_quota_refusals_total", "Job creations refused by a per-user quota, by limit.", ["limit"])


@dataclass(frozen=True)
class Quota:
    """The per-user limits; 0 turns a limit off."""

    max_jobs_in_flight: int = 0
    video_seconds_per_day: int = 0

    @property
    def enabled(self) -> bool:
        """True when at least one limit is on."""
        return self.max_jobs_in_flight > 0 or self.video_seconds_per_day > 0


class QuotaExceeded(ResourceExhausted):
    """The user is at a quota: creating this job would pass it."""

    def __init__(
        self, user_id: str, *, limit: str, maximum: float, current: float, requested: float, retry_after: float
    ) -> None:
        what = "jobs in flight" if limit == "jobs_in_flight" else "video-seconds today (UTC)"
        super().__init__(
            f"quota {limit}: {_number(current)} of {_number(maximum)} {what} used, this job needs "
            f"{_number(requested)}; retry after {math.ceil(retry_after)} s",
            limit=limit,
            subject=f"user:{user_id}",
            retry_after=retry_after,
            details={"max": maximum, "current": current, "requested": requested},
        )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


async def enforce_quota(session: AsyncSession, new: NewJob, quota: Quota) -> None:
    """Locks the user's quota until the transaction ends, then raises QuotaExceeded when the
    job would pass a limit. An idempotent replay of an existing job always passes."""
    if not quota.enabled:
        return
    requested = new.options.video_seconds if quota.video_seconds_per_day else 0.0
    if requested > quota.video_seconds_per_day > 0:
        # Never possible, not even tomorrow: a bad request, not a wait.
        raise InvalidArgument(
            DURATION_FIELD, f"must be at most {quota.video_seconds_per_day} seconds, the daily video-seconds quota"
        )
    await repository.lock_user(session, new.user_id)
    key = new.idempotency_key
    if key is not None and await repository.job_by_idempotency_key(session, new.user_id, key) is not None:
        return  # a replay: it creates nothing, so it is never refused
    usage = await repository.user_usage(
        session,
        new.user_id,
        in_flight=quota.max_jobs_in_flight > 0,
        seconds_today=quota.video_seconds_per_day > 0,
        default_seconds=DEFAULT_VIDEO_SECONDS,
    )
    if quota.max_jobs_in_flight and usage.in_flight + 1 > quota.max_jobs_in_flight:
        _refuse(
            new.user_id,
            limit="jobs_in_flight",
            maximum=quota.max_jobs_in_flight,
            current=usage.in_flight,
            requested=1,
            retry_after=IN_FLIGHT_RETRY_AFTER,
        )
    if quota.video_seconds_per_day and usage.seconds_today + requested > quota.video_seconds_per_day:
        _refuse(
            new.user_id,
            limit="video_seconds_per_day",
            maximum=quota.video_seconds_per_day,
            current=usage.seconds_today,
            requested=requested,
            retry_after=usage.until_tomorrow,
        )


def _refuse(
    user_id: str, *, limit: str, maximum: float, current: float, requested: float, retry_after: float
) -> NoReturn:
    REFUSALS.labels(limit).inc()
    log.info("job.quota_refused", user_id=user_id, limit=limit, maximum=maximum, current=current)
    raise QuotaExceeded(
        user_id, limit=limit, maximum=maximum, current=current, requested=requested, retry_after=retry_after
    )
