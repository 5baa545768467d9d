"""`make run` (python -m services.run) starts the system, reports it ready, and stops it cleanly."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.processes import ServiceProcess, clean_env, free_port


async def test_run_starts_the_jobs_service_and_stops_on_ctrl_c(database_url: str) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vg-run-"))
    grpc_port = free_port()
    env = clean_env(
        DATABASE_URL=database_url,
        JOBS_GRPC_PORT=str(grpc_port),
        JOBS_METRICS_PORT=str(free_port()),
        GRPC_BIND_HOST="127.0.0.1",
        SHUTDOWN_DRAIN_DELAY="0",
    )
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    run = ServiceProcess("services.run", env, cwd=workdir)
    try:
        run.wait_event("run.ready", timeout=120)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        run.process.send_signal(signal.SIGINT)

        run.wait_event("run.stopped", timeout=30)
        assert run.process.wait(30) == 0
        assert "VideoGen is running" in run.output()
    finally:
        run.stop()
        shutil.rmtree(workdir, ignore_errors=True)
