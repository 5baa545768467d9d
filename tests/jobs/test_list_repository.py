"""The list query itself: keyset pages in the index's order, ties broken by id, exact totals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from services.core.db import async_url
from services.core.job.status import JobStatus
from services.core.models import Job
from services.jobs import repository
from services.jobs.domain import JobFilter, ListPosition

Sessions = async_sessionmaker[AsyncSession]
INSTANT = datetime(2026, 12, 1, 12, 0, 0, 250_001, tzinfo=UTC)


@pytest.fixture
async def sessions(own_database_url: str) -> AsyncIterator[Sessions]:
    """Sessions on a fresh database of this test's own."""
    engine = create_async_engine(async_url(own_database_url))
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def insert(sessions: Sessions, *, user: str, ids: list[str], created_at: datetime, status: str) -> None:
    """Jobs of user with these ids, all created at one instant, in status."""
    statement = text(
        "INSERT INTO jobs (id, user_id, prompt, status, created_at) "
        "SELECT unnest(CAST(:ids AS text[])), :user, 'p', :status, :created_at"
    )
    async with sessions.begin() as session:
        await session.execute(statement, {"ids": ids, "user": user, "status": status, "created_at": created_at})


async def walk(sessions: Sessions, query: JobFilter) -> list[repository.JobPage]:
    """Every page of query, each after the last job of the one before."""
    async with sessions() as session:
        pages = [await repository.list_jobs(session, query)]
        while (last := pages[-1].last) is not None and len(pages) < 20:
            query = JobFilter(user_id=query.user_id, status=query.status, skip=0, take=query.take, after=last)
            pages.append(await repository.list_jobs(session, query))
    return pages


async def test_jobs_of_one_instant_are_walked_by_id_descending(sessions: Sessions) -> None:
    ids = [f"c{n:02d}" for n in range(12)]
    await insert(sessions, user="same", ids=ids, created_at=INSTANT, status="queued")

    pages = await walk(sessions, JobFilter(user_id="same", status=None, skip=0, take=5))

    assert [[job.id for job in page.jobs] for page in pages] == [
        sorted(ids, reverse=True)[:5],
        sorted(ids, reverse=True)[5:10],
        sorted(ids, reverse=True)[10:],
    ]
    assert [page.more for page in pages] == [True, True, False]


async def test_a_position_past_the_oldest_job_answers_an_empty_page_with_the_total(sessions: Sessions) -> None:
    await insert(sessions, user="few", ids=["a1", "a2"], created_at=INSTANT, status="queued")
    after = ListPosition(created_at=datetime(2000, 1, 1, tzinfo=UTC), job_id="zzz")

    async with sessions() as session:
        page = await repository.list_jobs(session, JobFilter(user_id="few", status=None, skip=0, take=5, after=after))

    assert (list(page.jobs), page.total, page.more, page.last) == ([], 2, False, None)


@pytest.mark.parametrize("user_id", ["u1", None])
@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.CANCELLED, None])
async def test_every_filters_total_is_its_count(
    sessions: Sessions, user_id: str | None, status: JobStatus | None
) -> None:
    await insert(sessions, user="u1", ids=["b1", "b2", "b3"], created_at=INSTANT, status="queued")
    await insert(sessions, user="u1", ids=["b4"], created_at=INSTANT, status="cancelled")
    await insert(sessions, user="u2", ids=["b5", "b6"], created_at=INSTANT, status="cancelled")
    query = JobFilter(user_id=user_id, status=status, skip=0, take=1)
    counted = select(func.count()).select_from(Job)
    if user_id is not None:
        counted = counted.where(Job.user_id == user_id)
    if status is not None:
        counted = counted.where(Job.status == status.value)

    async with sessions() as session:
        page = await repository.list_jobs(session, query)
        count = await session.scalar(counted)

    assert page.total == count
