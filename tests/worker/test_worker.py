"""The worker end to end: real Celery worker process, real Redis, real PostgreSQL, real video."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import av
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.jobs.attempts import Attempts
from tests.support.factories import create_job, unique_user
from tests.support.internal import internal_channel
from tests.support.stack import FINAL, Stack, StackFactory
from videogen.v1 import jobs_pb2, worker_pb2, worker_pb2_grpc

COMPLETED = jobs_pb2.JOB_STATUS_COMPLETED


def metadata(**values: Any) -> dict[str, Any]:
    return values


@pytest.fixture(scope="module")
async def shared_stack(start_module_stack: StackFactory) -> Stack:
    """A stack with the default settings that the module's tests share when they only make jobs
    of their own and wait for them to finish; a test that stops, kills or counts starts its own."""
    return await start_module_stack()


async def test_job_completes_with_a_video_decoded_at_the_requested_size(shared_stack: Stack) -> None:
    stack = shared_stack
    job = await create_job(
        stack.jobs, metadata={"durationSeconds": 2, "width": 320, "height": 240, "fps": 12, "priority": "high"}
    )

    done = await stack.wait_for(job.id)

    assert done.status == COMPLETED, done.error_message
    assert (done.used_provider, done.used_model) == ("local", "local-pyav-h264-v1")
    assert done.result.video_url.startswith(f"/media/{job.id}.mp4?expires=")
    assert done.result.content_type == "video/mp4"
    path = stack.media / done.result.storage_key
    assert path.stat().st_size == done.result.size_bytes > 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 320, 240)
        assert stream.average_rate == 12
    assert frames == 24
    assert frames / 12 == done.result.duration_seconds == 2
    assert (done.result.width, done.result.height, done.result.fps) == (320, 240, 12)


async def test_deleting_a_completed_job_deletes_its_video(shared_stack: Stack) -> None:
    stack = shared_stack
    job = await create_job(stack.jobs, metadata={"durationSeconds": 1, "width": 64, "height": 64, "fps": 4})
    done = await stack.wait_for(job.id)
    path = stack.media / done.result.storage_key
    assert path.exists()

    await stack.jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=job.id))

    assert not path.exists()


async def test_bad_video_options_fail_the_job_without_retries(shared_stack: Stack) -> None:
    stack = shared_stack
    # Out of every provider's reach is refused at create; out of the chosen renderer's is the job's failure.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await create_job(stack.jobs, metadata={"width": 99999}, max_retries=3)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata.width" in str(refused.value.details())
    job = await create_job(stack.jobs, metadata={"width": 4000}, max_retries=3)

    done = await stack.wait_for(job.id)

    assert done.status == jobs_pb2.JOB_STATUS_FAILED
    assert done.retry_count == 0
    assert "metadata.width" in done.error_message


async def test_high_job_starts_before_waiting_low_jobs(start_stack: StackFactory, workdir: Path) -> None:
    stack = await start_stack(worker_concurrency=1)
    gate = workdir / "gate"
    user = unique_user()
    busy = await create_job(
        stack.jobs, user_id=user, metadata={"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}}
    )
    await stack.wait_for(busy.id, lambda j: j.status == jobs_pb2.JOB_STATUS_PROCESSING)
    low = [
        await create_job(
            stack.jobs, user_id=user, prompt=f"low {n}", metadata={"provider": "scripted", "priority": "low"}
        )
        for n in range(20)
    ]
    high = await create_job(
        stack.jobs, user_id=user, prompt="high", metadata={"provider": "scripted", "priority": "high"}
    )

    gate.touch()

    finished = [await stack.wait_for(job.id) for job in [high, *low]]
    assert all(job.status == COMPLETED for job in finished)
    high_start = finished[0].started_at.ToNanoseconds()
    assert all(high_start < job.started_at.ToNanoseconds() for job in finished[1:])


async def test_provider_error_is_retried_max_retries_times_with_backoff_then_failed(
    start_stack: StackFactory,
) -> None:
    stack = await start_stack(job_retry_backoff_base=0.3, job_retry_backoff_max=0.6)
    began = time.monotonic()
    job = await create_job(
        stack.jobs,
        max_retries=3,
        metadata={"provider": "scripted", "modelInput": {"script": {"fail": "upstream said 503"}}},
    )

    done = await stack.wait_for(job.id)

    elapsed = time.monotonic() - began
    assert done.status == jobs_pb2.JOB_STATUS_FAILED
    assert done.retry_count == 3
    assert done.error_message == "upstream said 503"
    delays = [e["delay_seconds"] for e in stack.worker.events("job.retry_scheduled", job_id=job.id)]
    assert [e["retry_count"] for e in stack.worker.events("job.retry_scheduled", job_id=job.id)] == [1, 2, 3]
    ceilings = [0.3, 0.6, 0.6]  # base * 2**n, capped at the maximum
    assert all(ceiling / 2 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True))
    assert elapsed >= sum(delays)
    # The worker logs an attempt's end after FailJob answered: wait for the line, do not race it.
    await stack.event("job.attempt_finished", 10, job_id=job.id, outcome="failed")
    assert len(stack.worker.events("job.attempt_finished", job_id=job.id)) == 4


async def test_an_attempt_deletes_what_earlier_attempts_stored_and_never_completed(start_stack: StackFactory) -> None:
    # Retries at least 0.5 s apart: the file below lands well before the second attempt starts.
    stack = await start_stack(job_retry_backoff_base=1.0, job_retry_backoff_max=1.0)
    job = await create_job(
        stack.jobs, max_retries=1, metadata={"provider": "scripted", "modelInput": {"script": {"fail": "no"}}}
    )
    # What the first attempt would have left had it been killed between its store and CompleteJob
    # (its own key: that attempt leaves it alone).
    first = stack.media / f"{job.id}.mp4"
    stack.media.mkdir(parents=True, exist_ok=True)
    first.write_bytes(b"an attempt's video")

    done = await stack.wait_for(job.id)

    assert (done.status, done.retry_count) == (jobs_pb2.JOB_STATUS_FAILED, 1)
    assert not first.exists()
    deleted = await stack.event("job.previous_videos_deleted", 10, job_id=job.id)
    assert deleted["keys"] == [first.name]


async def test_cancel_while_queued_never_starts(start_stack: StackFactory, workdir: Path) -> None:
    stack = await start_stack(worker_concurrency=1)
    gate = workdir / "gate"
    busy = await create_job(
        stack.jobs, metadata={"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}}
    )
    await stack.wait_for(busy.id, lambda j: j.status == jobs_pb2.JOB_STATUS_PROCESSING)
    waiting = await create_job(stack.jobs, metadata={"provider": "scripted"})

    await stack.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=waiting.id))
    gate.touch()

    await stack.event("job.skipped", job_id=waiting.id)
    final = await stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=waiting.id))
    assert final.status == jobs_pb2.JOB_STATUS_CANCELLED
    assert not final.HasField("started_at")
    assert not (stack.media / f"{waiting.id}.mp4").exists()


async def test_cancel_while_processing_stops_within_5s_and_leaves_no_file(start_stack: StackFactory) -> None:
    stack = await start_stack()
    job = await create_job(stack.jobs, metadata={"durationSeconds": 60, "width": 640, "height": 360, "fps": 30})
    await stack.wait_for(job.id, lambda j: j.progress_percent > 0)

    cancelled_at = time.monotonic()
    await stack.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    await stack.event("job.attempt_finished", 5, job_id=job.id, outcome="cancelled")

    assert time.monotonic() - cancelled_at < 5
    final = await stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert final.status == jobs_pb2.JOB_STATUS_CANCELLED
    assert [p.name for p in stack.media.rglob("*") if p.is_file()] == []


async def test_worker_health_stats_and_metrics(start_stack: StackFactory) -> None:
    stack = await start_stack()
    job = await create_job(stack.jobs, metadata={"durationSeconds": 1, "width": 64, "height": 64, "fps": 4})
    assert (await stack.wait_for(job.id)).status == COMPLETED

    async with internal_channel(f"127.0.0.1:{stack.worker_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "videogen.v1.WorkerService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stats = await worker_pb2_grpc.WorkerServiceStub(channel).GetWorkerStats(worker_pb2.GetWorkerStatsRequest())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.worker_port}") as plain:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await worker_pb2_grpc.WorkerServiceStub(plain).GetWorkerStats(worker_pb2.GetWorkerStatsRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # internal: the service credential only
    assert {q.queue for q in stats.queues} == {"high_priority", "default", "low_priority"}
    assert [(w.concurrency, w.active) for w in stats.workers] == [(2, 0)]

    body = await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics").read().decode()
    )
    assert "job_processing_time_seconds_count 1.0" in body
    assert 'job_completion_rate_total{status="completed"} 1.0' in body
    for queue in ("high_priority", "default", "low_priority"):
        assert f'job_queue_depth{{queue="{queue}"}} 0.0' in body


async def test_worker_turns_not_serving_while_the_jobs_service_is_down(start_stack: StackFactory) -> None:
    stack = await start_stack()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.worker_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING

        await stack.server.stop(0)

        assert (await asyncio.wait_for(watch.read(), 10)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()


async def test_queued_job_waits_for_a_worker_and_runs_when_one_starts(start_stack: StackFactory) -> None:
    stack = await start_stack()
    jobs = [await create_job(stack.jobs, metadata={"provider": "scripted"}) for _ in range(3)]

    done = [await stack.wait_for(job.id) for job in jobs]

    assert {job.status for job in done} == {COMPLETED}
    assert all(json.loads(job.metadata_json)["provider"] == "scripted" for job in done)
    assert FINAL


async def test_a_killed_celery_worker_is_started_again_and_its_job_completes(start_stack: StackFactory) -> None:
    stack = await start_stack(worker_concurrency=1, worker_heartbeat_interval=0.5)
    first_pid = (await stack.event("worker.serving"))["celery_pid"]
    job = await create_job(stack.jobs, metadata={"durationSeconds": 30, "width": 320, "height": 240, "fps": 24})
    await stack.wait_for(job.id, lambda j: j.progress_percent > 0)

    os.kill(first_pid, signal.SIGKILL)

    restarted = await stack.event("worker.celery_restarted")
    assert restarted["pid"] != first_pid
    # The supervisor is SERVING again with the new Celery worker, and new work runs on it.
    fresh = await create_job(stack.jobs, metadata={"provider": "scripted"})
    assert (await stack.wait_for(fresh.id)).status == COMPLETED


async def test_a_start_that_landed_with_its_answer_lost_is_taken_over_by_the_retried_message(
    start_stack: StackFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database went down under the start's commit: the start landed, the worker heard
    # UNAVAILABLE and sent its message again. The retry takes the attempt over: no attempt burned.
    stack = await start_stack(worker_heartbeat_interval=0.5)
    starts: list[dict[str, Any]] = []
    real_start = Attempts.start

    async def start_then_lose_the_answer(self: Attempts, job_id: str, **kwargs: Any) -> Any:
        starts.append({"job_id": job_id, **kwargs})
        job = await real_start(self, job_id, **kwargs)
        if len(starts) == 1:
            raise ConnectionResetError("the connection closed under the commit")
        return job

    monkeypatch.setattr(Attempts, "start", start_then_lose_the_answer)
    job = await create_job(stack.jobs, metadata={"provider": "scripted"})

    done = await stack.wait_for(job.id)

    assert done.status == COMPLETED, done.error_message
    assert done.retry_count == 0
    assert [start["job_id"] for start in starts] == [job.id, job.id]
    first, retried = starts
    assert (first["resumes"], retried["resumes"]) == ((), (first["worker_id"],))
    assert retried["attempt"] == first["attempt"] == 0
