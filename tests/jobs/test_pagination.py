"""Pagination: pages never overlap, cover every job once, newest first, with the total."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.jobs.test_validation import assert_invalid
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


async def walk(jobs: Stub, request: jobs_pb2.ListJobsRequest) -> list[jobs_pb2.ListJobsResponse]:
    """Every page of a list, each asked with the cursor of the one before."""
    pages = [await jobs.ListJobs(request)]
    while pages[-1].HasField("next_cursor") and len(pages) < 20:  # bounded: a cursor ignored fails, not hangs
        request.cursor = pages[-1].next_cursor
        pages.append(await jobs.ListJobs(request))
    return pages


async def test_a_cursor_walk_covers_every_job_once_newest_first(jobs: Stub) -> None:
    user = unique_user()
    created = [(await create_job(jobs, user_id=user)).id for _ in range(23)]

    pages = await walk(jobs, jobs_pb2.ListJobsRequest(user_id=user, take=5))

    assert [len(page.jobs) for page in pages] == [5, 5, 5, 5, 3]
    assert {(page.total, page.skip, page.take) for page in pages} == {(23, 0, 5)}
    assert [job.id for page in pages for job in page.jobs] == list(reversed(created))


async def test_a_page_that_ends_the_list_has_no_next_cursor(jobs: Stub) -> None:
    user = unique_user()
    for _ in range(4):
        await create_job(jobs, user_id=user)

    exact = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, take=4))
    short = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, take=3))

    assert len(exact.jobs) == 4 and not exact.HasField("next_cursor")
    assert short.HasField("next_cursor")


async def test_jobs_created_during_a_walk_neither_repeat_nor_hide_the_older_ones(jobs: Stub) -> None:
    user = unique_user()
    older = [(await create_job(jobs, user_id=user)).id for _ in range(10)]
    first = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, take=4))
    newer = [(await create_job(jobs, user_id=user)).id for _ in range(5)]

    rest = await walk(jobs, jobs_pb2.ListJobsRequest(user_id=user, take=4, cursor=first.next_cursor))

    walked = [job.id for page in [first, *rest] for job in page.jobs]
    assert walked == list(reversed(older))
    assert not set(newer) & set(walked)
    assert {page.total for page in rest} == {15}


async def test_a_skip_page_answers_the_cursor_that_continues_it(jobs: Stub) -> None:
    user = unique_user()
    created = [(await create_job(jobs, user_id=user)).id for _ in range(9)]

    skipped = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, skip=2, take=3))
    following = await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, take=3, cursor=skipped.next_cursor))

    newest_first = list(reversed(created))
    assert [job.id for job in skipped.jobs] == newest_first[2:5]
    assert [job.id for job in following.jobs] == newest_first[5:8]


async def test_a_cursor_of_a_status_filter_walks_that_status_only(jobs: Stub) -> None:
    user = unique_user()
    created = [(await create_job(jobs, user_id=user)).id for _ in range(8)]
    for job_id in created[::2]:
        await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job_id))

    pages = await walk(jobs, jobs_pb2.ListJobsRequest(user_id=user, status=jobs_pb2.JOB_STATUS_CANCELLED, take=3))

    assert [job.id for page in pages for job in page.jobs] == list(reversed(created[::2]))
    assert {page.total for page in pages} == {4}


async def test_the_total_stays_exact_through_cancels_and_deletes(jobs: Stub) -> None:
    user = unique_user()
    created = [(await create_job(jobs, user_id=user)).id for _ in range(5)]
    queued = jobs_pb2.ListJobsRequest(user_id=user, status=jobs_pb2.JOB_STATUS_QUEUED)
    cancelled = jobs_pb2.ListJobsRequest(user_id=user, status=jobs_pb2.JOB_STATUS_CANCELLED)

    for job_id in created[:3]:
        await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job_id))
    await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=created[0]))

    assert (await jobs.ListJobs(queued)).total == 2
    assert (await jobs.ListJobs(cancelled)).total == 2
    assert (await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user))).total == 4


async def a_first_cursor(jobs: Stub, *, jobs_of_the_user: int) -> tuple[str, str]:
    """A new user with that many jobs, and the cursor of its list's first page of one."""
    user = unique_user()
    for _ in range(jobs_of_the_user):
        await create_job(jobs, user_id=user)
    return user, (await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user, take=1))).next_cursor


async def test_a_cursor_with_skip_is_refused_naming_skip(jobs: Stub) -> None:
    user, cursor = await a_first_cursor(jobs, jobs_of_the_user=3)
    both = jobs_pb2.ListJobsRequest(user_id=user, skip=1, cursor=cursor)

    await assert_invalid(jobs.ListJobs(both), "skip")


async def test_a_cursor_of_another_list_or_altered_is_refused_naming_cursor(jobs: Stub) -> None:
    user, cursor = await a_first_cursor(jobs, jobs_of_the_user=3)
    altered = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]

    for request in (
        jobs_pb2.ListJobsRequest(user_id=unique_user(), cursor=cursor),
        jobs_pb2.ListJobsRequest(cursor=cursor),
        jobs_pb2.ListJobsRequest(user_id=user, status=jobs_pb2.JOB_STATUS_QUEUED, cursor=cursor),
        jobs_pb2.ListJobsRequest(user_id=user, cursor=altered),
        jobs_pb2.ListJobsRequest(user_id=user, cursor=""),
        jobs_pb2.ListJobsRequest(user_id=user, cursor="not a cursor"),
        jobs_pb2.ListJobsRequest(user_id=user, cursor="x" * 129),
    ):
        await assert_invalid(jobs.ListJobs(request), "cursor")


async def test_a_bad_user_id_with_a_cursor_is_refused_naming_user_id(jobs: Stub) -> None:
    _, cursor = await a_first_cursor(jobs, jobs_of_the_user=2)

    await assert_invalid(jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id="a b", cursor=cursor)), "user_id")
