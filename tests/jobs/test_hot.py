"""StartJob and CompleteJob in hand-written SQL (services/jobs/hot.py): the job ends as the general
path leaves it, a job with a webhook goes the general path with each delivery recorded once, and
a connection the database dropped is unavailable and leaves the pool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.core import db
from services.core.db import is_unavailable
from services.core.ids import new_cuid
from services.core.job.options import JobOptions
from services.core.settings import CoreSettings
from services.jobs import repository
from services.jobs.convert import job_to_proto
from services.jobs.domain import NewJob
from services.jobs.hot import HotTransitions, Moved
from tests.support import databases
from tests.support.deliveries import SECRET, ServiceFactory, all_delivered, deliveries_of, wait_deliveries
from tests.support.factories import create_job, video_result
from tests.support.webhook_receiver import webhook_receiver
from videogen.v1 import jobs_pb2, lifecycle_pb2

# What differs between two jobs worked the same way: who they are and when it happened.
PER_JOB = ("id", "created_at", "updated_at", "started_at", "completed_at", "result")


class HotCalls:
    """HotTransitions._move spied on: what it answered, and whether it is switched off."""

    def __init__(self) -> None:
        self.answers: list[Moved | None] = []
        self.off = False


@pytest.fixture
def hot(monkeypatch: pytest.MonkeyPatch) -> Iterator[HotCalls]:
    calls = HotCalls()
    real = HotTransitions._move

    async def spied(self: HotTransitions, statement: str, *args: Any) -> Moved | None:
        answer = None if calls.off else await real(self, statement, *args)
        calls.answers.append(answer)
        return answer

    monkeypatch.setattr(HotTransitions, "_move", spied)
    yield calls


async def work(service: Any, job_id: str) -> jobs_pb2.Job:
    """StartJob and CompleteJob of attempt 0, as a worker sends them; the job as stored after."""
    await service.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job_id, worker_id="h/1/t", attempt=0))
    await service.lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(
            id=job_id,
            result=video_result(job_id),
            used_provider="local",
            used_model="m1",
            generation_time_ms=42,
            cost_usd=0.125,
            attempt=0,
        )
    )
    job: jobs_pb2.Job = await service.jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))
    return job


def but_per_job(job: jobs_pb2.Job) -> jobs_pb2.Job:
    copy = jobs_pb2.Job()
    copy.CopyFrom(job)
    for name in PER_JOB:
        copy.ClearField(name)  # type: ignore[arg-type]
    return copy


async def test_a_job_worked_on_the_hot_path_ends_as_on_the_general_path(
    start_service: ServiceFactory, hot: HotCalls
) -> None:
    service = await start_service()
    fast = await work(service, (await create_job(service.jobs, user_id="u-1", prompt="a fox")).id)
    hot.off = True
    general = await work(service, (await create_job(service.jobs, user_id="u-1", prompt="a fox")).id)

    assert [answer is not None for answer in hot.answers] == [True, True, False, False]
    assert fast.status == jobs_pb2.JOB_STATUS_COMPLETED and fast.cost_usd == 0.125
    assert but_per_job(fast) == but_per_job(general)
    assert fast.result.storage_key == f"{fast.id}.mp4" and fast.result.size_bytes == general.result.size_bytes
    for name in ("started_at", "completed_at"):
        assert fast.HasField(name) and general.HasField(name)


async def test_a_job_with_a_webhook_takes_the_general_path_and_records_each_delivery_once(
    start_service: ServiceFactory, hot: HotCalls
) -> None:
    service = await start_service()
    with webhook_receiver(SECRET) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url)
        await work(service, job.id)

        found = await wait_deliveries(service.jobs, job.id, lambda f: len(f) == 3 and all_delivered(f))

    assert hot.answers == [None, None]  # each tried, matched no row, and decided by the general path
    assert [d.event_type for d in found] == ["job.queued", "job.processing", "job.completed"]
    assert len(receiver.accepted) == 3


async def test_a_job_whose_webhook_skips_the_event_stays_on_the_hot_path(
    start_service: ServiceFactory, hot: HotCalls
) -> None:
    service = await start_service()
    with webhook_receiver(SECRET) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url, webhook_events=["job.failed"])

        await work(service, job.id)

    assert [answer is not None for answer in hot.answers] == [True, True]
    assert await deliveries_of(service.jobs, job.id) == []


async def test_a_connection_the_database_dropped_is_unavailable_and_leaves_the_pool(own_database_url: str) -> None:
    engine = db.create_engine(CoreSettings(db_pool_size=1), own_database_url)
    hot = HotTransitions(engine)
    admin = await databases.connect(own_database_url)
    try:
        ids = [new_cuid() for _ in range(2)]
        for job_id in ids:
            await admin.execute("INSERT INTO jobs (id, user_id, prompt) VALUES ($1, 'u-1', 'a fox')", job_id)
        assert await hot.start(ids[0], worker_id="h/1/t", attempt=0) is not None  # the pool's one connection
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )

        with pytest.raises(Exception) as dropped:
            await hot.start(ids[1], worker_id="h/1/t", attempt=0)
        moved = await hot.start(ids[1], worker_id="h/1/t", attempt=0)

        assert is_unavailable(dropped.value), repr(dropped.value)
        assert moved is not None and moved.job.status == "processing" and moved.seen
    finally:
        await admin.close()
        await engine.dispose()


@pytest.mark.parametrize("claimed", [True, False])
async def test_a_batch_inserted_by_hand_is_stored_as_the_orm_stores_it(own_database_url: str, claimed: bool) -> None:
    engine = db.create_engine(CoreSettings(), own_database_url)
    sessions = db.create_sessions(engine)
    news = [
        NewJob(
            user_id=f"u-{n}", prompt=f"a fox {n}", metadata={"n": n, "é": [1.5]}, options=JobOptions(), max_retries=n
        )
        for n in range(3)
    ]
    try:
        by_hand = await HotTransitions(engine).insert_queued(news, claimed=claimed)
        async with sessions.begin() as session:
            by_orm = await repository.insert_jobs(session, news, claimed=claimed)
        async with sessions() as session:
            stored = [await repository.get_job(session, job.id) for job in by_hand]
    finally:
        await engine.dispose()

    assert [job.prompt for job in by_hand] == ["a fox 0", "a fox 1", "a fox 2"]
    assert [but_per_job(job_to_proto(job)) for job in by_hand] == [but_per_job(job_to_proto(job)) for job in by_orm]
    assert [but_per_job(job_to_proto(job)) for job in by_hand] == [
        but_per_job(job_to_proto(job)) for job in stored if job is not None
    ]
    assert all((job.enqueued_at is not None) == claimed for job in by_hand)
