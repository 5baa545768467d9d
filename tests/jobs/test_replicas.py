"""Any number of jobs replicas run the background loops side by side: two jobs services on one
database and one Redis, their rounds run at once over the same items, and each loop acts once
per item (issue 18). Every loop claims its rows (`FOR UPDATE SKIP LOCKED`, or a lease), so both
replicas take a share of the work and no item is handled twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.core.queues import DEFAULT, LOW_PRIORITY
from services.core.storage.local import LocalMediaStorage
from tests.support import databases
from tests.support.deliveries import SECRET
from tests.support.factories import create_job, processing_job, video_result
from tests.support.replicas import Replica, Replicas, started_replicas
from tests.support.webhook_receiver import webhook_receiver
from videogen.v1 import jobs_pb2, lifecycle_pb2

# Items per loop: three batches (REPLICA_SETTINGS), so that both replicas get some in the first
# round and a later round finishes the rest.
ITEMS = 12


@pytest.fixture
async def replicas(
    own_database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Replicas]:
    """Two jobs services on this test's database, past the first round of their loops."""
    async with started_replicas(
        2, database_url=own_database_url, redis_url=redis_url, media_dir=tmp_path, monkeypatch=monkeypatch
    ) as started:
        yield started


async def sql(database_url: str, statement: str, *args: Any) -> None:
    """Runs one statement on its own connection (as an operator, or time passing, would)."""
    connection = await databases.connect(database_url)
    try:
        await connection.execute(statement, *args)
    finally:
        await connection.close()


async def queued_jobs(replicas: Replicas, count: int = ITEMS) -> list[str]:
    """count queued jobs, created through both replicas in turn; their messages went out."""
    members = replicas.members
    return [(await create_job(members[i % len(members)].clients.jobs)).id for i in range(count)]


async def until_idle(replicas: Replicas, *, rounds: int = 10) -> list[list[int]]:
    """Dispatcher rounds on both replicas at once until a round publishes nothing; each round's counts."""
    done: list[list[int]] = []
    for _ in range(rounds):
        sent = await replicas.dispatch_rounds()
        if not any(sent):
            return done
        done.append(sent)
    raise AssertionError(f"the dispatchers never went idle: {done}")


def both_worked(per_replica: list[int]) -> bool:
    """Whether every replica did some of the work."""
    return all(count > 0 for count in per_replica)


async def test_each_unpublished_job_is_published_once_by_the_replicas_together(replicas: Replicas) -> None:
    ids = await queued_jobs(replicas)
    # Their publishes failed (or a retry's backoff passed): the rounds must send them.
    replicas.broker.empty_queues()
    await sql(replicas.database_url, "UPDATE jobs SET enqueued_at = NULL")

    rounds = await until_idle(replicas)

    assert replicas.broker.per_job() == Counter(dict.fromkeys(ids, 1))
    assert both_worked(rounds[0])
    assert sum(map(sum, rounds)) == ITEMS


async def test_each_expired_lease_is_reaped_once_by_the_replicas_together(replicas: Replicas) -> None:
    members = replicas.members
    ids = [
        (await processing_job(members[i % 2].clients.jobs, members[i % 2].clients.lifecycle)).id for i in range(ITEMS)
    ]
    replicas.broker.empty_queues()
    await sql(replicas.database_url, "UPDATE jobs SET heartbeat_at = now() - interval '1 hour'")

    # The reapers wait until their dispatcher held the database for a lease: rounds every 0.4
    # lease, so that the third is the first that reaps, on both replicas at once.
    for _ in range(3):
        replicas.built.clock.advance(30.0 * 0.4)
        await replicas.dispatch_rounds()
    await until_idle(replicas)

    reaped = [r.dispatcher.reaped for r in members]
    assert all(reaped), reaped
    assert Counter(job_id for per_replica in reaped for job_id in per_replica) == Counter(dict.fromkeys(ids, 1))
    for job_id in ids:
        job = await members[0].clients.jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))
        assert (job.status, job.retry_count) == (jobs_pb2.JOB_STATUS_QUEUED, 1)
    # Each requeued job's next attempt went out once.
    assert Counter(replicas.broker.messages()) == Counter({(job_id, 1): 1 for job_id in ids})


async def test_each_lost_message_is_published_again_once_per_sweep(replicas: Replicas) -> None:
    ids = await queued_jobs(replicas, count=8)  # two batches: one round of both replicas takes all
    for sweep in (1, 2):
        replicas.broker.empty_queues()
        # Sent longer than ORPHAN_SWEEP_AFTER_SECONDS ago, and their queues are empty in Redis.
        await sql(replicas.database_url, "UPDATE jobs SET enqueued_at = now() - interval '60 seconds'")
        # Both replicas read the depths (all empty) before either publishes.
        replicas.built.gate.arm(len(replicas.members))
        sent = await replicas.dispatch_rounds()
        replicas.built.gate.disarm()

        assert sent == [4, 4], f"sweep {sweep}"
        assert replicas.broker.per_job() == Counter(dict.fromkeys(ids, 1)), f"sweep {sweep}"
    assert await until_idle(replicas) == []


async def test_each_job_past_the_republish_bound_is_published_again_once(replicas: Replicas) -> None:
    ids = await queued_jobs(replicas)
    # Their messages wait behind a backlog (the queues are not empty): only the bound sends them.
    await sql(replicas.database_url, "UPDATE jobs SET enqueued_at = now() - interval '1000 seconds'")

    rounds = await until_idle(replicas)

    assert both_worked(rounds[0])
    assert replicas.broker.per_job() == Counter(dict.fromkeys(ids, 2))  # the first copy and one more


async def test_each_long_waiter_is_promoted_once_by_the_replicas_together(
    own_database_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with started_replicas(
        2,
        database_url=own_database_url,
        redis_url=redis_url,
        media_dir=tmp_path,
        monkeypatch=monkeypatch,
        priority_aging_seconds=60.0,
    ) as replicas:
        members = replicas.members
        low = {"priority": "low"}
        ids = [(await create_job(members[i % 2].clients.jobs, metadata=low)).id for i in range(ITEMS)]
        # Waited past PRIORITY_AGING_SECONDS on low_priority, whose messages are still there.
        await sql(own_database_url, "UPDATE jobs SET enqueued_at = now() - interval '120 seconds'")

        rounds = await until_idle(replicas)

        assert both_worked(rounds[0])
        assert replicas.broker.per_job((LOW_PRIORITY,)) == Counter(dict.fromkeys(ids, 1))  # the first copy
        assert replicas.broker.per_job((DEFAULT,)) == Counter(dict.fromkeys(ids, 1))  # promoted once
        assert replicas.broker.per_job() == Counter(dict.fromkeys(ids, 2))  # and nothing else


async def test_after_redis_lost_its_data_each_queued_job_is_published_once(replicas: Replicas) -> None:
    ids = await queued_jobs(replicas)
    replicas.broker.empty_queues()
    replicas.broker.forget_epoch()

    rounds = await until_idle(replicas)

    assert replicas.broker.per_job() == Counter(dict.fromkeys(ids, 1))
    assert sum(map(sum, rounds)) == ITEMS


async def test_each_webhook_delivery_is_received_once_from_the_replicas_together(replicas: Replicas) -> None:
    members = replicas.members
    ids = await queued_jobs(replicas, count=9)  # three per WEBHOOK_CONCURRENCY of each replica, and more
    with webhook_receiver(SECRET) as receiver:
        # Due deliveries that neither replica recorded itself (no wake-up of its own).
        await sql(
            replicas.database_url,
            "INSERT INTO webhook_deliveries (id, job_id, event_id, event_type, payload, url) "
            "SELECT 'd' || id, id, 'evt_' || id, 'job.queued', '{}'::jsonb, $1 FROM jobs",
            receiver.url,
        )
        for member in members:
            member.sender.wake()

        received = await receiver.wait_accepted(len(ids))
        await wait_all_delivered(replicas, count=len(ids))

    attempted = [member.sender.attempted for member in members]
    assert all(attempted), attempted
    assert Counter(d for per_replica in attempted for d in per_replica) == Counter({f"d{i}": 1 for i in ids})
    assert Counter(r.event_id for r in received) == Counter({f"evt_{i}": 1 for i in ids})
    assert len(receiver.received) == len(ids)


async def wait_all_delivered(replicas: Replicas, *, count: int, timeout: float = 10) -> None:
    """Waits until count deliveries are recorded delivered (no lease is left to run out)."""
    connection = await databases.connect(replicas.database_url)
    try:
        async with asyncio.timeout(timeout):
            query = "SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered'"
            while await connection.fetchval(query) != count:
                await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def completed_with_video(member: Replica, storage: LocalMediaStorage) -> str:
    """A completed job whose video the media directory holds, as a worker leaves it."""
    clients = member.clients
    job = await processing_job(clients.jobs, clients.lifecycle)
    key = f"{job.id}.mp4"
    partial = storage.partial_path(key)
    partial.write_bytes(job.id.encode())
    stored = storage.store(partial, key)
    result = video_result(job.id, video_url=stored.url, size_bytes=stored.size_bytes)
    await clients.lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(id=job.id, result=result, used_provider="local", used_model="m1")
    )
    return job.id


async def test_each_expired_job_and_its_video_are_deleted_once_by_the_replicas_together(
    replicas: Replicas, tmp_path: Path
) -> None:
    storage = LocalMediaStorage(tmp_path)
    members = replicas.members
    ids = [await completed_with_video(members[i % 2], storage) for i in range(9)]  # three batches
    await sql(replicas.database_url, "UPDATE jobs SET completed_at = now() - interval '8 days'")

    first = await replicas.sweep_rounds()
    rest = [await replicas.sweep_rounds() for _ in range(3)]

    assert both_worked(first)
    assert sum(first) + sum(map(sum, rest)) == len(ids)
    assert Counter(replicas.built.deletes) == Counter({f"{i}.mp4": 1 for i in ids})
    assert not any(storage.path(f"{i}.mp4").exists() for i in ids)
    assert await count_rows(replicas.database_url, "jobs") == 0


async def count_rows(database_url: str, table: str) -> int:
    """How many rows table holds."""
    connection = await databases.connect(database_url)
    try:
        return int(await connection.fetchval(f"SELECT count(*) FROM {table}"))
    finally:
        await connection.close()
