"""SQLAlchemy access to the jobs and metrics tables; no commits here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    Update,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.core.ids import new_cuid
from services.core.job.status import ACTIVE, JobStatus
from services.core.models import Job, JobAttempt, JobCount, Metric, QuotaDeletedUsage
from services.jobs.domain import JobFilter, ListPosition, NewJob


def _queued_row(new: NewJob) -> dict[str, Any]:
    """The columns of a new queued job that every insert sets."""
    return {
        "id": new_cuid(),
        "user_id": new.user_id,
        "prompt": new.prompt,
        "metadata_": new.metadata,
        "max_retries": new.max_retries,
        "queue": new.queue,
        "status": JobStatus.QUEUED.value,
        "webhook_url": new.webhook_url,
        "webhook_events": list(new.webhook_events),
        "traceparent": new.traceparent,
    }


async def insert_job(session: AsyncSession, new: NewJob, *, claimed: bool) -> Job | None:
    """Inserts a queued job and answers it as stored, in one round trip; a claimed job's
    message is being published by the caller (enqueued_at set). None when the user already
    has a job with the same idempotency key (after that job's transaction has committed)."""
    values = pg_insert(Job).values(
        **_queued_row(new),
        enqueued_at=func.now() if claimed else None,
        idempotency_key=new.idempotency_key,
        request_fingerprint=new.fingerprint if new.idempotency_key else None,
    )
    if new.idempotency_key is not None:
        values = values.on_conflict_do_nothing(
            index_elements=[Job.user_id, Job.idempotency_key], index_where=Job.idempotency_key.is_not(None)
        )
    return (await session.scalars(values.returning(Job))).one_or_none()


# One statement each, built once: SQLAlchemy compiles it once and renders a batch of any size
# as one multi-row INSERT (its "insertmanyvalues"), rows answered in the order given.
_INSERT_CLAIMED = insert(Job).values(enqueued_at=func.now()).returning(Job, sort_by_parameter_order=True)
_INSERT_UNCLAIMED = insert(Job).returning(Job, sort_by_parameter_order=True)


async def insert_jobs(session: AsyncSession, news: Sequence[NewJob], *, claimed: bool) -> list[Job]:
    """Inserts queued jobs without idempotency keys in one round trip; answers them in the order
    of news."""
    statement = _INSERT_CLAIMED if claimed else _INSERT_UNCLAIMED
    return list((await session.scalars(statement, [_queued_row(new) for new in news])).all())


async def job_by_idempotency_key(session: AsyncSession, user_id: str, key: str) -> Job | None:
    """The user's job created with this idempotency key, if any."""
    statement = select(Job).where(Job.user_id == user_id, Job.idempotency_key == key)
    return (await session.scalars(statement)).one_or_none()


async def get_job(session: AsyncSession, job_id: str) -> Job | None:
    """The job with this id, if any."""
    return await session.get(Job, job_id)


async def get_jobs(session: AsyncSession, job_ids: Iterable[str]) -> Sequence[Job]:
    """The jobs among job_ids that exist, in one query."""
    return (await session.scalars(select(Job).where(Job.id.in_(set(job_ids))))).all()


async def job_attempts(session: AsyncSession, job_id: str, *, limit: int) -> Sequence[JobAttempt]:
    """The job's ended attempts, oldest first (at most limit)."""
    statement = select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.id).limit(limit)
    return (await session.scalars(statement)).all()


def _conditions(query: JobFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.user_id is not None:
        conditions.append(Job.user_id == query.user_id)
    if query.status is not None:
        conditions.append(Job.status == query.status.value)
    return conditions


def _total(query: JobFilter) -> Select[int]:
    """The filter's exact total from the counters of migration 0011: at most five rows a user."""
    counted = select(func.coalesce(func.sum(JobCount.n), 0))
    if query.user_id is not None:
        counted = counted.where(JobCount.user_id == query.user_id)
    if query.status is not None:
        counted = counted.where(JobCount.status == query.status.value)
    return counted


@dataclass(frozen=True)
class JobPage:
    """One page of a list, how many jobs match over all pages, and whether more follow."""

    jobs: Sequence[Job]
    total: int
    more: bool

    @property
    def last(self) -> ListPosition | None:
        """Where the next page starts, when one follows."""
        if not (self.more and self.jobs):
            return None
        return ListPosition(created_at=self.jobs[-1].created_at, job_id=self.jobs[-1].id)


async def list_jobs(session: AsyncSession, query: JobFilter) -> JobPage:
    """One page of jobs newest first, from skip or after a position (keyset), with the total.

    One statement (one snapshot, one round trip): the page's ids come from the filter's index
    alone, then only those rows are read; one row past the page tells whether more follow. The
    total is a scalar subquery over the counters. An empty page asks for the total on its own."""
    conditions = _conditions(query)
    if query.after is not None:
        # A row comparison: the index (..., created_at DESC, id DESC) is entered right past it.
        after = (query.after.created_at, query.after.job_id)
        conditions.append(tuple_(Job.created_at, Job.id) < tuple_(*after))
    ids = (
        select(Job.id, Job.created_at)
        .where(*conditions)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .offset(query.skip)
        .limit(query.take + 1)
        .subquery("page")
    )
    page = (
        select(Job, _total(query).scalar_subquery())
        .join(ids, Job.id == ids.c.id)
        .order_by(ids.c.created_at.desc(), ids.c.id.desc())
    )
    rows = (await session.execute(page)).all()
    if not rows:
        return JobPage(jobs=[], total=int(await session.scalar(_total(query)) or 0), more=False)
    jobs = [row[0] for row in rows[: query.take]]
    return JobPage(jobs=jobs, total=int(rows[0][1]), more=len(rows) > query.take)


def _transition_statement(
    job_id: str, from_statuses: Iterable[JobStatus], values: dict[str, Any], extra: Iterable[ColumnElement[bool]]
) -> Update:
    """The conditional UPDATE of transition() and transition_seen(), without its RETURNING."""
    return (
        update(Job)
        .where(Job.id == job_id, Job.status.in_([s.value for s in from_statuses]), *extra)
        .values(updated_at=func.now(), **values)
        # RETURNING gives the row as stored: no evaluation of the WHERE over the session's objects.
        .execution_options(populate_existing=True, synchronize_session=False)
    )


async def transition(
    session: AsyncSession,
    job_id: str,
    *,
    from_statuses: Iterable[JobStatus],
    values: dict[str, Any],
    extra: Iterable[ColumnElement[bool]] = (),
) -> Job | None:
    """One conditional UPDATE: changes the job only while it is in from_statuses."""
    statement = _transition_statement(job_id, from_statuses, values, extra).returning(Job)
    return (await session.scalars(statement)).one_or_none()


async def transition_seen(
    session: AsyncSession,
    job_id: str,
    *,
    from_statuses: Iterable[JobStatus],
    values: dict[str, Any],
    extra: Iterable[ColumnElement[bool]] = (),
) -> tuple[Job, bool] | None:
    """As transition(), and whether a client sees the change: whether the trigger moved the job's
    version (event_seq), which it does only when a visible column changed."""
    before = aliased(Job)
    # A sub-select of the statement reads the row as it was before the statement changed it.
    version_before = select(before.event_seq).where(before.id == job_id).scalar_subquery()
    statement = _transition_statement(job_id, from_statuses, values, extra).returning(Job, version_before)
    row = (await session.execute(statement)).one_or_none()
    return None if row is None else (row[0], row[0].event_seq != row[1])


async def delete_job(
    session: AsyncSession, job_id: str, *, statuses: Iterable[JobStatus], extra: Iterable[ColumnElement[bool]] = ()
) -> Job | None:
    """Deletes the job while it is in one of statuses and answers it as it was."""
    statement = (
        delete(Job)
        .where(Job.id == job_id, Job.status.in_([s.value for s in statuses]), *extra)
        .returning(Job)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(statement)).one_or_none()


async def insert_metrics(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Inserts telemetry rows in one statement."""
    if rows:
        await session.execute(insert(Metric), list(rows))
    return len(rows)


async def existing_job_ids(session: AsyncSession, job_ids: Iterable[str]) -> set[str]:
    """Which of job_ids exist."""
    ids = set(job_ids)
    if not ids:
        return set()
    return set((await session.scalars(select(Job.id).where(Job.id.in_(ids)))).all())


@dataclass(frozen=True)
class Usage:
    """What a user holds against the quotas: jobs in flight, video-seconds created today (UTC),
    and the seconds until the next UTC day, all by the database's clock."""

    in_flight: int
    seconds_today: float
    until_tomorrow: float


async def lock_user(session: AsyncSession, user_id: str) -> None:
    """Holds the user's quota lock until the transaction ends (an advisory lock on a hash of the id)."""
    key = func.hashtextextended(literal(f"videogen:quota:{user_id}"), 0)
    await session.execute(select(func.pg_advisory_xact_lock(key)))


async def user_usage(
    session: AsyncSession, user_id: str, *, in_flight: bool, seconds_today: bool, default_seconds: float
) -> Usage:
    """The user's usage in one round trip; a part not asked for is 0. A job is charged its
    metadata.durationSeconds when that is a positive number, else default_seconds."""
    day = func.date_trunc("day", func.timezone("UTC", func.now()))  # 00:00 today, UTC
    today, tomorrow = func.timezone("UTC", day), func.timezone("UTC", day + timedelta(days=1))
    duration = Job.metadata_["durationSeconds"]
    default = cast(literal(str(default_seconds)), Numeric)
    # CASE tests in order, so the cast never sees a string, a boolean or null.
    charge = case(
        (func.jsonb_typeof(duration) != "number", default),
        (cast(duration, Numeric) > 0, cast(duration, Numeric)),
        else_=default,
    )
    mine = Job.user_id == user_id
    count = select(func.count()).where(mine, Job.status.in_([s.value for s in ACTIVE])).scalar_subquery()
    created = select(func.coalesce(func.sum(charge), 0)).where(mine, Job.created_at >= today).scalar_subquery()
    # Jobs created today and deleted since still count (kept by a trigger, migration 0007).
    deleted = select(func.coalesce(func.sum(QuotaDeletedUsage.video_seconds), 0)).where(
        QuotaDeletedUsage.user_id == user_id, QuotaDeletedUsage.day == func.date(func.timezone("UTC", func.now()))
    )
    total = created + deleted.scalar_subquery()
    row = (
        await session.execute(
            select(
                count if in_flight else literal(0),
                total if seconds_today else literal(0),
                func.extract("epoch", tomorrow - func.now()),
            )
        )
    ).one()
    return Usage(in_flight=int(row[0]), seconds_today=float(row[1]), until_tomorrow=float(row[2]))
