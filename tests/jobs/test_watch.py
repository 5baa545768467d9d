"""WatchJob: live events of one job over gRPC, fanned out through one Redis subscription."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.db import async_url
from services.core.tasks import broker_url
from services.jobs.live.events import channel_of
from services.jobs.server import JobsServer, start_jobs_server
from tests.conftest import jobs_settings, wait_serving
from tests.support.brokers import drop_keys
from tests.support.factories import create_job, job_in, processing_job, video_result
from tests.support.internal import internal_channel
from tests.support.stack import StackFactory
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, lifecycle_pb2, lifecycle_pb2_grpc

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub

# Enough frames that the built-in renderer reports progress several times.
# About 0.4 s of rendering here: a few progress reports, one every WORKER_PROGRESS_INTERVAL (0.1 s).
RENDER = {"durationSeconds": 12, "width": 320, "height": 240, "fps": 24}


@dataclass
class Live:
    """A jobs service with Redis (no dispatcher: the tests move jobs themselves)."""

    jobs: JobServiceAsyncStub
    lifecycle: JobLifecycleServiceAsyncStub
    server: JobsServer
    prefix: str
    redis: aioredis.Redis
    database_url: str


@pytest.fixture
async def start_live(own_database_url: str, redis_url: str) -> AsyncIterator[Any]:
    started: list[tuple[JobsServer, grpc.aio.Channel, aioredis.Redis]] = []
    prefixes: list[str] = []
    internal: list[grpc.aio.Channel] = []

    async def start(*, dispatcher: bool = False, **overrides: Any) -> Live:
        prefix = f"t{uuid.uuid4().hex[:10]}-"
        # No periodic resync unless a test asks: events must come through pub/sub.
        values = {"jobs_watch_keepalive_seconds": 0.3, "jobs_watch_resync_seconds": 3600, **overrides}
        settings = jobs_settings(celery_key_prefix=prefix, **values)
        server = await start_jobs_server(
            settings,
            database_url=own_database_url,
            address="127.0.0.1:0",
            redis_url=redis_url,
            broker=broker_url(settings, redis_url) if dispatcher else None,
        )
        prefixes.append(prefix)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        await wait_serving(channel)
        client = aioredis.Redis.from_url(redis_url)
        started.append((server, channel, client))
        internal.append(internal_channel(f"127.0.0.1:{server.port}"))
        lifecycle = lifecycle_pb2_grpc.JobLifecycleServiceStub(internal[-1])
        return Live(jobs_pb2_grpc.JobServiceStub(channel), lifecycle, server, prefix, client, own_database_url)

    yield start
    for worker_channel in internal:
        await worker_channel.close(None)
    for server, channel, client in started:
        await channel.close(None)
        if server.app.serving is not None:  # not stopped by the test itself
            await server.stop(0)
        await client.aclose()
    for prefix in prefixes:
        drop_keys(redis_url, prefix)


@pytest.fixture
async def live(start_live: Any) -> Live:
    started: Live = await start_live()
    return started


def watch(jobs: JobServiceAsyncStub, job_id: str, after: int | None = None) -> Any:
    request = jobs_pb2.WatchJobRequest(id=job_id)
    if after is not None:
        request.after_event_id = after
    return jobs.WatchJob(request)


async def next_event(stream: Any, *, skip_keepalives: bool = True, timeout: float = 10) -> jobs_pb2.JobEvent:
    async with asyncio.timeout(timeout):
        while True:
            event = await stream.read()
            assert isinstance(event, jobs_pb2.JobEvent), "the stream ended"
            if not (skip_keepalives and event.type == "job.keepalive"):
                return event


async def collect(stream: Any, timeout: float = 60) -> list[jobs_pb2.JobEvent]:
    """Every event until the stream ends, keep-alives left out."""
    events = []
    async with asyncio.timeout(timeout):
        while isinstance(event := await stream.read(), jobs_pb2.JobEvent):
            if event.type != "job.keepalive":
                events.append(event)
    return events


async def numsub(live: Live, job_id: str) -> int:
    channel = channel_of(live.prefix, job_id)
    return int(dict(await live.redis.pubsub_numsub(channel))[channel.encode()])


async def test_a_watcher_sees_queued_processing_rising_progress_then_completed(
    start_stack: StackFactory, tmp_path: Path
) -> None:
    stack = await start_stack(worker_concurrency=1)
    gate = tmp_path / "gate"
    blocker = await create_job(
        stack.jobs, metadata={"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}}
    )
    await stack.wait_for(blocker.id, lambda j: j.status == jobs_pb2.JOB_STATUS_PROCESSING)
    job = await create_job(stack.jobs, metadata=RENDER)
    stream = watch(stack.jobs, job.id)
    assert (await next_event(stream)).type == "job.queued"  # the only slot is busy

    gate.touch()
    events = await collect(stream)

    assert await stream.code() == grpc.StatusCode.OK
    types = [e.type for e in events]
    assert types[0] == "job.processing"
    assert types[-1] == "job.completed" and types.count("job.completed") == 1
    assert "job.processing" in types
    ids = [e.event_id for e in events]
    assert ids == sorted(set(ids)), "event ids rise strictly"
    progress = [(e.job.progress_percent, e.job.progress_stage) for e in events if e.type == "job.progress"]
    percents = [p for p, stage in progress if stage == "rendering"]
    assert len(percents) >= 2 and percents == sorted(percents) and percents[-1] > percents[0]
    # `storing` is reported only when the store outlasts a progress interval.
    assert progress[-1][1] in ("rendering", "storing")
    final = events[-1].job
    assert final.status == jobs_pb2.JOB_STATUS_COMPLETED and final.progress_percent == 100
    assert final.result.video_url and final.event_id == events[-1].event_id


async def test_a_watcher_of_a_finished_job_gets_the_final_state_at_once(live: Live) -> None:
    for status, proto in [
        ("completed", jobs_pb2.JOB_STATUS_COMPLETED),
        ("failed", jobs_pb2.JOB_STATUS_FAILED),
        ("cancelled", jobs_pb2.JOB_STATUS_CANCELLED),
    ]:
        job = await job_in(live.jobs, live.lifecycle, status)

        events = await collect(watch(live.jobs, job.id), timeout=2)

        assert [(e.type, e.job.status, e.event_id) for e in events] == [(f"job.{status}", proto, job.event_id)]


async def test_resuming_with_the_last_event_id_skips_what_was_seen(live: Live) -> None:
    job = await processing_job(live.jobs, live.lifecycle)
    seen = await live.lifecycle.ReportProgress(
        lifecycle_pb2.ReportProgressRequest(id=job.id, percent=10, stage="rendering")
    )
    newer = await live.lifecycle.ReportProgress(
        lifecycle_pb2.ReportProgressRequest(id=job.id, percent=20, stage="rendering")
    )

    behind = watch(live.jobs, job.id, after=seen.event_id)
    first = await next_event(behind)
    assert (first.event_id, first.job.progress_percent) == (newer.event_id, 20)

    caught_up = watch(live.jobs, job.id, after=newer.event_id)
    await live.lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=30, stage="rendering"))
    first = await next_event(caught_up)
    assert (first.event_id, first.type, first.job.progress_percent) == (newer.event_id + 1, "job.processing", 30)
    behind.cancel()
    caught_up.cancel()


async def test_resuming_a_finished_job_at_its_final_event_ends_at_once(live: Live) -> None:
    job = await job_in(live.jobs, live.lifecycle, "completed")

    assert await collect(watch(live.jobs, job.id, after=job.event_id), timeout=2) == []


async def test_an_event_id_the_job_never_had_is_ignored(live: Live) -> None:
    job = await create_job(live.jobs)

    stream = watch(live.jobs, job.id, after=job.event_id + 100)

    assert (await next_event(stream)).event_id == job.event_id
    stream.cancel()


async def test_the_stream_follows_a_retry_and_ends_with_the_final_state(live: Live) -> None:
    job = await processing_job(live.jobs, live.lifecycle, max_retries=1)
    stream = watch(live.jobs, job.id)
    assert (await next_event(stream)).type == "job.processing"

    await live.lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="flaky"))
    retrying = await next_event(stream)
    assert (retrying.type, retrying.job.retry_count) == ("job.retrying", 1)
    await live.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w2"))
    assert (await next_event(stream)).type == "job.processing"
    await live.lifecycle.FailJob(lifecycle_pb2.FailJobRequest(id=job.id, error_message="broken"))

    rest = await collect(stream, timeout=5)
    assert [(e.type, e.job.error_message) for e in rest] == [("job.failed", "broken")]
    assert await stream.code() == grpc.StatusCode.OK


async def test_a_cancel_ends_the_stream(live: Live) -> None:
    job = await create_job(live.jobs)
    stream = watch(live.jobs, job.id)
    assert (await next_event(stream)).type == "job.queued"

    await live.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))

    assert [e.type for e in await collect(stream, timeout=5)] == ["job.cancelled"]


async def test_a_heartbeat_without_news_is_no_event(live: Live) -> None:
    job = await processing_job(live.jobs, live.lifecycle)
    once = await live.lifecycle.ReportProgress(
        lifecycle_pb2.ReportProgressRequest(id=job.id, percent=50, stage="rendering")
    )

    again = await live.lifecycle.ReportProgress(
        lifecycle_pb2.ReportProgressRequest(id=job.id, percent=50, stage="rendering")
    )

    assert (job.event_id, once.event_id, again.event_id) == (2, 3, 3)


async def test_a_heartbeat_without_news_publishes_nothing_yet_renews_the_lease(live: Live) -> None:
    job = await processing_job(live.jobs, live.lifecycle)
    subscription = live.redis.pubsub()
    await subscription.subscribe(channel_of(live.prefix, job.id))
    confirmed = await subscription.get_message(timeout=5)
    assert confirmed is not None and confirmed["type"] == "subscribe"
    report = lifecycle_pb2.ReportProgressRequest(id=job.id, percent=50, stage="rendering")
    await live.lifecycle.ReportProgress(report)
    leased = await heartbeat_of(live, job.id)

    await live.lifecycle.ReportProgress(report)
    renewed = await heartbeat_of(live, job.id)
    await live.lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=50, stage="encoding"))
    await live.lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=60, stage="encoding"))

    published = []
    while (message := await subscription.get_message(timeout=1)) is not None:
        if message["type"] == "message":
            published.append(jobs_pb2.Job.FromString(message["data"]))
    await subscription.aclose()  # type: ignore[no-untyped-call]
    assert [(j.progress_percent, j.progress_stage) for j in published] == [
        (50, "rendering"),
        (50, "encoding"),
        (60, "encoding"),
    ]
    assert renewed > leased


async def heartbeat_of(live: Live, job_id: str) -> Any:
    """The job's heartbeat_at as stored (its lease runs from there)."""
    engine = create_async_engine(async_url(live.database_url))
    try:
        async with engine.connect() as connection:
            return (
                await connection.execute(text("SELECT heartbeat_at FROM jobs WHERE id = :id"), {"id": job_id})
            ).scalar_one()
    finally:
        await engine.dispose()


async def test_many_watchers_of_a_job_share_one_redis_subscription(start_live: Any) -> None:
    live = await start_live(jobs_watch_resync_seconds=0.5)
    job = await processing_job(live.jobs, live.lifecycle)
    streams = [watch(live.jobs, job.id) for _ in range(20)]
    for stream in streams:
        assert (await next_event(stream)).type == "job.processing"

    assert await numsub(live, job.id) == 1
    await live.lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=40, stage="rendering"))
    for stream in streams:
        assert (await next_event(stream)).job.progress_percent == 40
    await live.lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(
            id=job.id, result=video_result(job.id), used_provider="local", used_model="m", generation_time_ms=1
        )
    )
    for stream in streams:
        assert [e.type for e in await collect(stream, timeout=5)] == ["job.completed"]

    async with asyncio.timeout(5):  # the idle channel is dropped on the next tick
        while await numsub(live, job.id) != 0:
            await asyncio.sleep(0.1)


async def test_a_quiet_stream_gets_keepalives(live: Live) -> None:
    job = await create_job(live.jobs)
    stream = watch(live.jobs, job.id)
    first = await next_event(stream)

    keepalive = await next_event(stream, skip_keepalives=False, timeout=3)

    assert (keepalive.type, keepalive.event_id, keepalive.HasField("job")) == ("job.keepalive", first.event_id, False)
    stream.cancel()


async def test_an_event_published_while_the_subscription_was_lost_still_arrives(live: Live) -> None:
    job = await processing_job(live.jobs, live.lifecycle)
    stream = watch(live.jobs, job.id)
    assert (await next_event(stream)).type == "job.processing"

    killed = 0
    for client in await live.redis.client_list(_type="pubsub"):
        if client["name"] == f"{live.prefix}videogen-jobs-watch":
            killed += await live.redis.client_kill_filter(_id=client["id"])
    assert killed == 1
    await live.lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job.id, percent=70, stage="rendering"))

    assert (await next_event(stream, timeout=10)).job.progress_percent == 70
    stream.cancel()


async def test_unknown_ids_are_not_found_and_a_negative_event_id_is_invalid(live: Live) -> None:
    unknown = watch(live.jobs, "c" + "0" * 24)
    malformed = watch(live.jobs, "not an id")  # as GetJob: an id no job can have is not found
    negative = watch(live.jobs, (await create_job(live.jobs)).id, after=-1)

    for stream, code in [
        (unknown, grpc.StatusCode.NOT_FOUND),
        (malformed, grpc.StatusCode.NOT_FOUND),
        (negative, grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await collect(stream, timeout=5)
        assert error.value.code() == code
    assert (error.value.details() or "").startswith("after_event_id")


async def test_watchers_beyond_the_limit_are_refused(start_live: Any) -> None:
    live = await start_live(jobs_watch_max_watchers=1)
    job = await create_job(live.jobs)
    first = watch(live.jobs, job.id)
    await next_event(first)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await collect(watch(live.jobs, job.id), timeout=5)

    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    first.cancel()


async def test_a_stopping_service_ends_open_streams_as_unavailable(live: Live) -> None:
    job = await create_job(live.jobs)
    stream = watch(live.jobs, job.id)
    await next_event(stream)

    await live.server.stop(1)

    with pytest.raises(grpc.aio.AioRpcError) as error:
        await collect(stream, timeout=5)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_job_the_reaper_takes_back_from_a_silent_worker_is_an_event(start_live: Any) -> None:
    live = await start_live(dispatcher=True, job_lease_seconds=0.5, dispatch_interval=0.1)
    job = await create_job(live.jobs, max_retries=0)
    started = await live.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="silent"))
    stream = watch(live.jobs, job.id, after=started.event_id)

    events = await collect(stream, timeout=10)

    assert [(e.type, e.job.status) for e in events] == [("job.failed", jobs_pb2.JOB_STATUS_FAILED)]
    assert "no heartbeat" in events[0].job.error_message


async def test_open_streams_are_counted_in_job_watchers(live: Live) -> None:
    job = await create_job(live.jobs)
    before = REGISTRY.get_sample_value("job_watchers") or 0
    streams = [watch(live.jobs, job.id) for _ in range(3)]
    for stream in streams:
        await next_event(stream)

    assert REGISTRY.get_sample_value("job_watchers") == before + 3
    await live.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    for stream in streams:
        await collect(stream, timeout=5)
    assert REGISTRY.get_sample_value("job_watchers") == before


async def test_a_change_published_while_nobody_listened_is_made_good_by_the_resync(start_live: Any) -> None:
    live = await start_live(jobs_watch_resync_seconds=0.5)
    job = await processing_job(live.jobs, live.lifecycle)
    stream = watch(live.jobs, job.id)
    assert (await next_event(stream)).type == "job.processing"

    # A change whose PUBLISH never happened (a Redis blip on the publishing side): only the row changes.
    await live.redis.publish(channel_of(live.prefix, job.id), b"not a job")  # ignored, and harmless
    engine = create_async_engine(async_url(live.database_url))
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE jobs SET progress_percent = 55 WHERE id = :id"), {"id": job.id})
    finally:
        await engine.dispose()

    event = await next_event(stream, timeout=5)
    assert (event.type, event.job.progress_percent) == ("job.progress", 55)
    stream.cancel()
