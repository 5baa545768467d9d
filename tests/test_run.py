"""`make run` (python -m services.run) starts the system, reports it ready, and stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.brokers import drop_keys
from tests.support.processes import ServiceProcess, clean_env, free_ports_env


async def test_run_starts_the_system_runs_a_job_and_stops_on_ctrl_c(own_database_url: str, redis_url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vg-run-"))
    ports = free_ports_env()
    grpc_port, worker_port = int(ports["JOBS_GRPC_PORT"]), int(ports["WORKER_GRPC_PORT"])
    providers_port, edge_port = int(ports["PROVIDERS_GRPC_PORT"]), int(ports["EDGE_PORT"])
    prefix = f"run{uuid.uuid4().hex[:8]}-"
    env = clean_env(
        **ports,
        DATABASE_URL=own_database_url,
        REDIS_URL=redis_url,
        CELERY_KEY_PREFIX=prefix,
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
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}", timeout=30) as client:
            body = {"userId": "run-user", "prompt": "a red fox", "metadata": {"durationSeconds": 1, "width": 64,
                    "height": 64, "fps": 4}}  # fmt: skip
            headers = {"X-Request-ID": f"trace-{prefix}"}
            job = (await client.post("/api/v1/jobs", json=body, headers=headers)).json()
            async with asyncio.timeout(60):
                while (job := (await client.get(f"/api/v1/jobs/{job['id']}")).json())["status"] != "completed":
                    await asyncio.sleep(0.1)
            video = await client.get(job["result"]["videoUrl"])
            assert (await client.get("/health/ready")).status_code == 200
        assert video.status_code == 200 and len(video.content) == job["result"]["sizeBytes"]
        traced = {line.get("service") for line in run.events_with(request_id=f"trace-{prefix}")}
        assert {"gateway", "jobs", "worker"} <= traced

        run.process.send_signal(signal.SIGINT)

        run.wait_event("run.stopped", timeout=30)
        assert run.process.wait(30) == 0
        assert "VideoGen is running" in run.output()
    finally:
        run.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_keys(redis_url, prefix)


def child_pid(parent: int, module: str) -> int:
    """The pid of parent's child running `python -m module`."""
    for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if module.encode() in cmdline:
            return int(pid)
    raise LookupError(f"no child runs {module}")


async def test_run_restarts_a_crashed_service(own_database_url: str, redis_url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vg-run-"))
    ports = free_ports_env()
    prefix = f"run{uuid.uuid4().hex[:8]}-"
    env = clean_env(
        **ports,
        DATABASE_URL=own_database_url,
        REDIS_URL=redis_url,
        CELERY_KEY_PREFIX=prefix,
        GRPC_BIND_HOST="127.0.0.1",
        SHUTDOWN_DRAIN_DELAY="0",
    )
    run = ServiceProcess("services.run", env, cwd=workdir)
    try:
        await asyncio.to_thread(run.wait_event, "run.ready", 120)
        crashed = child_pid(run.process.pid, "services.jobs")

        os.kill(crashed, signal.SIGKILL)

        restarted = await asyncio.to_thread(run.wait_event, "run.child_restarted", 30, service="jobs")
        assert restarted["pid"] != crashed
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['EDGE_PORT']}", timeout=30) as client:
            body = {"userId": "after-crash", "prompt": "a phoenix", "metadata": {"durationSeconds": 1, "width": 64,
                    "height": 64, "fps": 4}}  # fmt: skip
            async with asyncio.timeout(60):
                while (created := await client.post("/api/v1/jobs", json=body)).status_code == 503:
                    await asyncio.sleep(0.2)
                assert created.status_code == 201, created.text
                job = created.json()
                while (job := (await client.get(f"/api/v1/jobs/{job['id']}")).json())["status"] != "completed":
                    await asyncio.sleep(0.1)
    finally:
        run.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_keys(redis_url, prefix)
