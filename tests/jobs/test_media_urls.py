"""The jobs service gives out signed media URLs (MEDIA_BACKEND=local) and stores the bare path."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest

from services.core.media_urls import MediaUrlSigner
from services.jobs.server import JobsServer, start_jobs_server
from tests.conftest import jobs_settings, wait_serving
from tests.support import databases
from tests.support.brokers import drop_keys
from tests.support.deliveries import SECRET
from tests.support.factories import create_job, video_result
from tests.support.internal import jobs_clients
from tests.support.webhook_receiver import webhook_receiver
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub

SECRET_KEY = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f"
TTL = 120


@dataclass
class Service:
    jobs: JobServiceAsyncStub
    lifecycle: JobLifecycleServiceAsyncStub
    signer: MediaUrlSigner
    database_url: str


@pytest.fixture
async def service(own_database_url: str, redis_url: str) -> AsyncIterator[Service]:
    """A jobs service with Redis (live events) and quick webhooks, signing for TTL seconds."""
    prefix = f"t{uuid.uuid4().hex[:10]}-"
    settings = jobs_settings(
        celery_key_prefix=prefix,
        secret_key=SECRET_KEY,
        media_url_ttl_seconds=TTL,
        webhook_secret=SECRET,
        webhook_poll_interval=0.1,
    )
    server: JobsServer = await start_jobs_server(
        settings, database_url=own_database_url, address="127.0.0.1:0", redis_url=redis_url
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await wait_serving(channel)
    async with jobs_clients(server.port, secret_key=SECRET_KEY) as clients:
        signer = MediaUrlSigner.from_settings(settings)
        yield Service(clients.jobs, clients.lifecycle, signer, own_database_url)
    await server.stop(0)
    drop_keys(redis_url, prefix)


def assert_signed_for_ttl(service: Service, url: str, key: str, *, signed_after: float) -> None:
    """url is key's path with a signature the gateway accepts, valid for TTL from when it was made."""
    parts = urlsplit(url)
    query = {name: values[0] for name, values in parse_qs(parts.query, strict_parsing=True).items()}
    assert parts.path == f"/media/{key}" and set(query) == {"expires", "signature"}, url
    expiry = service.signer.check(key, expires=query["expires"], signature=query["signature"])
    assert int(signed_after) + TTL <= expiry <= int(time.time()) + TTL


async def completed(service: Service, **fields: object) -> tuple[jobs_pb2.Job, jobs_pb2.Job]:
    """A job and the worker's CompleteJob answer, its video stored as `<id>.mp4`."""
    job = await create_job(service.jobs, **fields)
    await service.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="worker-1"))
    done = await service.lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(id=job.id, result=video_result(job.id), used_provider="local", used_model="m1")
    )
    return job, done


async def test_get_and_list_answer_a_freshly_signed_url(service: Service) -> None:
    started = time.time()
    job, _ = await completed(service)

    got = await service.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    listed = await service.jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=job.user_id))

    assert_signed_for_ttl(service, got.result.video_url, f"{job.id}.mp4", signed_after=started)
    assert_signed_for_ttl(service, listed.jobs[0].result.video_url, f"{job.id}.mp4", signed_after=started)


async def test_the_stored_result_and_the_workers_answer_keep_the_bare_path(service: Service) -> None:
    job, done = await completed(service)

    connection = await databases.connect(service.database_url)
    try:
        stored = json.loads(await connection.fetchval("SELECT result::text FROM jobs WHERE id = $1", job.id))
    finally:
        await connection.close()

    assert done.result.video_url == f"/media/{job.id}.mp4"
    assert (stored["video_url"], stored["storage_key"]) == (f"/media/{job.id}.mp4", f"{job.id}.mp4")


async def test_a_live_event_carries_a_signed_url(service: Service) -> None:
    job = await create_job(service.jobs)
    await service.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="worker-1"))
    stream = service.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id))
    started = time.time()

    await service.lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(id=job.id, result=video_result(job.id), used_provider="local", used_model="m1")
    )
    async with asyncio.timeout(10):
        while True:
            event = await stream.read()
            assert isinstance(event, jobs_pb2.JobEvent), "the stream ended"
            if event.type == "job.completed":
                break

    assert_signed_for_ttl(service, event.job.result.video_url, f"{job.id}.mp4", signed_after=started)


async def test_a_webhook_payload_carries_a_signed_url(service: Service) -> None:
    started = time.time()
    with webhook_receiver(SECRET) as receiver:
        job, _ = await completed(service, webhook_url=receiver.url, webhook_events=["job.completed"])
        accepted = await receiver.wait_accepted(1)

    payload = accepted[0].job
    assert_signed_for_ttl(service, payload["result"]["videoUrl"], f"{job.id}.mp4", signed_after=started)
