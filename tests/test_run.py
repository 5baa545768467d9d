"""`make run` (python -m services.run) starts the system, reports it ready, and stops it cleanly."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.brokers import drop_keys
from tests.support.factories import create_job
from tests.support.processes import ServiceProcess, clean_env, free_port
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

COMPLETED = jobs_pb2.JOB_STATUS_COMPLETED


async def test_run_starts_the_system_runs_a_job_and_stops_on_ctrl_c(own_database_url: str, redis_url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vg-run-"))
    grpc_port, worker_port, providers_port = free_port(), free_port(), free_port()
    prefix = f"run{uuid.uuid4().hex[:8]}-"
    env = clean_env(
        DATABASE_URL=own_database_url,
        REDIS_URL=redis_url,
        CELERY_KEY_PREFIX=prefix,
        JOBS_GRPC_PORT=str(grpc_port),
        JOBS_METRICS_PORT=str(free_port()),
        WORKER_GRPC_PORT=str(worker_port),
        PROVIDERS_GRPC_PORT=str(providers_port),
        PROVIDERS_METRICS_PORT=str(free_port()),
        WORKER_METRICS_PORT=str(free_port()),
        GRPC_BIND_HOST="127.0.0.1",
        SHUTDOWN_DRAIN_DELAY="0",
    )
    run = ServiceProcess("services.run", env, cwd=workdir)
    try:
        run.wait_event("run.ready", timeout=120)
        for port in (grpc_port, providers_port, worker_port):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            job = await create_job(jobs, metadata={"durationSeconds": 1, "width": 64, "height": 64, "fps": 4})
            async with asyncio.timeout(60):
                while (job := await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))).status != COMPLETED:
                    await asyncio.sleep(0.1)
        assert (workdir / ".data" / "media" / job.result.storage_key).stat().st_size == job.result.size_bytes

        run.process.send_signal(signal.SIGINT)

        run.wait_event("run.stopped", timeout=30)
        assert run.process.wait(30) == 0
        assert "VideoGen is running" in run.output()
    finally:
        run.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_keys(redis_url, prefix)
