"""Media retention: completed jobs older than MEDIA_RETENTION_DAYS go with their videos; the rest stay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from prometheus_client import REGISTRY

from services.core import db
from services.core.settings import CoreSettings
from services.core.storage import create_storage
from services.core.storage.base import MediaStorage
from services.core.storage.local import LocalMediaStorage
from services.jobs.retention import Retention, RetentionPolicy
from services.jobs.server import JobsServer, start_jobs_server
from tests.conftest import jobs_settings, wait_serving
from tests.support import databases
from tests.support.factories import job_in, processing_job, video_result
from tests.support.internal import JobsClients, jobs_clients
from tests.support.processes import free_port
from tests.support.s3 import object_keys, s3_settings
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub

Started = Callable[..., Awaitable[tuple[JobsClients, JobsServer]]]


@pytest.fixture
async def start(own_database_url: str) -> AsyncIterator[Started]:
    """Starts jobs services on a database of this test's own, settings overridden by keyword."""
    running: list[JobsServer] = []
    async with contextlib.AsyncExitStack() as opened:

        async def started(**overrides: Any) -> tuple[JobsClients, JobsServer]:
            server = await start_jobs_server(
                jobs_settings(**overrides), database_url=own_database_url, address="127.0.0.1:0"
            )
            running.append(server)
            clients = await opened.enter_async_context(jobs_clients(server.port))
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await wait_serving(channel)
            return clients, server

        yield started
    for server in running:
        await server.stop(0)


async def completed_with_video(clients: JobsClients, storage: MediaStorage) -> jobs_pb2.Job:
    """A completed job whose video (<job id>.mp4) the storage holds, as a worker leaves it."""
    lifecycle = clients.lifecycle
    job = await processing_job(clients.jobs, lifecycle)
    key = f"{job.id}.mp4"
    partial = storage.partial_path(key)
    partial.write_bytes(f"the video of {job.id}".encode())
    stored = storage.store(partial, key)
    result = video_result(job.id, video_url=stored.url, size_bytes=stored.size_bytes)
    request = lifecycle_pb2.CompleteJobRequest(id=job.id, result=result, used_provider="local", used_model="m1")
    completed: jobs_pb2.Job = await lifecycle.CompleteJob(request)
    return completed


async def age(database_url: str, job: jobs_pb2.Job, days: float) -> None:
    """Moves the job's end (and creation) days into the past."""
    connection = await databases.connect(database_url)
    try:
        await connection.execute(
            "UPDATE jobs SET completed_at = now() - make_interval(secs => $1), "
            "created_at = now() - make_interval(secs => $1) WHERE id = $2",
            days * 86_400,
            job.id,
        )
    finally:
        await connection.close()


async def exists(jobs: JobServiceAsyncStub, job_id: str) -> bool:
    try:
        await jobs.GetJob(jobs_pb2.GetJobRequest(id=job_id))
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND
        return False
    return True


Sweepers = Callable[..., Retention]


@pytest.fixture
async def retention(own_database_url: str) -> AsyncIterator[Sweepers]:
    """Makes retention sweepers (as many jobs replicas would run) on the test's database."""
    engines = []

    def sweeper(storage: MediaStorage, *, days: float = 7, batch: int = 100) -> Retention:
        engines.append(db.create_engine(jobs_settings(), own_database_url))
        policy = RetentionPolicy(days=days, interval=0.1, batch=batch)
        return Retention(db.create_sessions(engines[-1]), storage, policy)

    yield sweeper
    for engine in engines:
        await engine.dispose()


def deleted_total() -> float:
    return REGISTRY.get_sample_value("media_retention_deleted_total") or 0.0


async def test_completed_jobs_older_than_the_retention_go_with_their_objects_and_the_rest_stay(
    start: Started, retention: Sweepers, own_database_url: str, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    options = s3_settings(s3_endpoint, s3_bucket)
    clients, _ = await start(**options)
    jobs = clients.jobs
    storage = create_storage(tmp_path, CoreSettings(_env_file=None, **options))
    old = [await completed_with_video(clients, storage) for _ in range(3)]
    new = await completed_with_video(clients, storage)
    others = [await job_in(jobs, clients.lifecycle, status) for status in ("failed", "cancelled")] + [
        await processing_job(jobs, clients.lifecycle)
    ]
    for job in [*old, *others]:
        await age(own_database_url, job, days=10)
    await age(own_database_url, new, days=6)
    before = deleted_total()

    deleted = await retention(storage, days=7).sweep_once()

    assert deleted == 3
    assert deleted_total() - before == 3
    assert object_keys(s3_endpoint, s3_bucket) == {f"{new.id}.mp4"}
    assert [await exists(jobs, job.id) for job in old] == [False, False, False]
    assert await exists(jobs, new.id)
    # Failed and cancelled jobs hold no video, and a processing job is not finished: all kept.
    assert [await exists(jobs, job.id) for job in others] == [True, True, True]


async def test_the_jobs_service_sweeps_by_itself_when_retention_is_set(
    start: Started, own_database_url: str, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    clients, _ = await start(media_dir=media, media_retention_days=7, media_retention_interval=0.1)
    jobs = clients.jobs
    storage = LocalMediaStorage(media)
    old = await completed_with_video(clients, storage)
    new = await completed_with_video(clients, storage)

    await age(own_database_url, old, days=8)
    async with asyncio.timeout(10):
        while await exists(jobs, old.id):
            await asyncio.sleep(0.05)

    assert not (media / f"{old.id}.mp4").exists()
    assert (media / f"{new.id}.mp4").exists()
    assert await exists(jobs, new.id)


async def test_without_retention_old_jobs_are_kept(start: Started, own_database_url: str, tmp_path: Path) -> None:
    media = tmp_path / "media"
    clients, _ = await start(media_dir=media, media_retention_interval=0.1)
    jobs = clients.jobs
    old = await completed_with_video(clients, LocalMediaStorage(media))
    await age(own_database_url, old, days=3650)

    await asyncio.sleep(0.5)  # five intervals in which a sweep would have run

    assert await exists(jobs, old.id)
    assert (media / f"{old.id}.mp4").exists()


async def test_a_video_the_store_cannot_delete_keeps_its_job_for_a_later_round(
    start: Started, retention: Sweepers, own_database_url: str, s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    clients, _ = await start()
    jobs = clients.jobs
    reachable = create_storage(tmp_path, CoreSettings(_env_file=None, **s3_settings(s3_endpoint, s3_bucket)))
    old = await completed_with_video(clients, reachable)
    await age(own_database_url, old, days=30)
    down = s3_settings(f"http://127.0.0.1:{free_port()}", s3_bucket, s3_timeout=1)
    unreachable = create_storage(tmp_path, CoreSettings(_env_file=None, **down))

    assert await retention(unreachable).sweep_once() == 0
    assert await exists(jobs, old.id)
    assert object_keys(s3_endpoint, s3_bucket) == {f"{old.id}.mp4"}

    assert await retention(reachable).sweep_once() == 1
    assert not await exists(jobs, old.id)
    assert object_keys(s3_endpoint, s3_bucket) == set()


class CountingStorage(LocalMediaStorage):
    """Local storage that remembers every delete and whether it found a video."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.deletes: list[tuple[str, bool]] = []

    def delete(self, key: str) -> bool:
        existed = super().delete(key)
        self.deletes.append((key, existed))
        return existed


async def test_replicas_sweeping_at_once_delete_each_job_once(
    start: Started, retention: Sweepers, own_database_url: str, tmp_path: Path
) -> None:
    clients, _ = await start(media_dir=tmp_path)
    jobs = clients.jobs
    storage = CountingStorage(tmp_path)
    old = [await completed_with_video(clients, storage) for _ in range(8)]
    for job in old:
        await age(own_database_url, job, days=9)
    replicas = [retention(storage, batch=3) for _ in range(3)]

    rounds = await asyncio.gather(*(replica.sweep_once() for replica in replicas))
    # A replica that found the rest locked by the others left them for its next round.
    leftover = await replicas[0].sweep_once()

    assert sum(rounds) + leftover == len(old)
    assert [await exists(jobs, job.id) for job in old] == [False] * len(old)
    assert sorted(key for key, _ in storage.deletes) == sorted(f"{job.id}.mp4" for job in old)
    assert all(existed for _, existed in storage.deletes)
