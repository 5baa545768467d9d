"""Pagination: pages never overlap, cover every job once, newest first, with the total."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.factories import create_job, unique_user
from videogen.v1 import jobs_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub as Stub


async def test_pages_do_not_overlap_and_cover_every_job(jobs: Stub) -> None:
    user = unique_user()
    created = [(await create_job(jobs, user_id=user)).id for _ in range(23)]

    seen: list[str] = []
    for skip in range(0, 30, 5):
        page = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, skip=skip, take=5))
        assert page.total == 23
        assert (page.skip, page.take) == (skip, 5)
        seen.extend(job.id for job in page.jobs)

    assert len(seen) == len(set(seen)) == 23
    assert seen == list(reversed(created))


async def test_jobs_created_in_the_same_instant_keep_a_stable_order(jobs: Stub) -> None:
    import asyncio

    user = unique_user()
    await asyncio.gather(*(create_job(jobs, user_id=user) for _ in range(12)))

    first = [
        j.id
        for skip in (0, 4, 8)
        for j in (await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, skip=skip, take=4))).jobs
    ]
    again = [j.id for j in (await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, take=12))).jobs]

    assert len(set(first)) == 12
    assert first == again


async def test_skip_past_the_end_answers_an_empty_page_with_the_total(jobs: Stub) -> None:
    user = unique_user()
    await create_job(jobs, user_id=user)

    page = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, skip=50))

    assert list(page.jobs) == []
    assert page.total == 1
