"""`python -m services.jobs` as its own process: embedded database, graceful stop, bad settings."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import wait_serving
from tests.support import databases
from tests.support.factories import create_job
from tests.support.processes import ROOT, ServiceProcess, clean_env
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

FREE_PORTS = {"JOBS_GRPC_PORT": "0", "JOBS_METRICS_PORT": "0", "GRPC_BIND_HOST": "127.0.0.1"}


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short working directory (PostgreSQL's socket path must stay under 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vg-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_service_serves_on_the_embedded_postgres_when_database_url_is_unset(workdir: Path) -> None:
    service = ServiceProcess("services.jobs", clean_env(**FREE_PORTS), cwd=workdir)
    try:
        port = service.wait_event("jobs.serving", timeout=120)["grpc_port"]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel, "videogen.v1.JobService")
            job = await create_job(jobs_pb2_grpc.JobServiceStub(channel))
            assert job.status == jobs_pb2.JOB_STATUS_QUEUED
        assert (workdir / ".data" / "postgres" / "PG_VERSION").exists()
    finally:
        assert service.stop() == 0, service.output()


async def test_sigterm_turns_not_serving_and_finishes_the_call_in_flight(database_url: str, workdir: Path) -> None:
    env = clean_env(DATABASE_URL=database_url, SHUTDOWN_GRACE="20", MIGRATE_ON_START="false", **FREE_PORTS)
    service = ServiceProcess("services.jobs", env, cwd=workdir)
    port = service.wait_event("jobs.serving")["grpc_port"]
    blocker = await databases.connect(database_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await wait_serving(channel)
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            job = await create_job(jobs)
            # Hold the job's row lock so that a cancel is in flight when SIGTERM arrives.
            locked = blocker.transaction()
            await locked.start()
            await blocker.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job.id)
            in_flight = asyncio.ensure_future(jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id), timeout=30))
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            await asyncio.sleep(0.5)

            service.process.terminate()

            reply = await asyncio.wait_for(watch.read(), 10)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            await asyncio.sleep(0.5)
            assert not in_flight.done()
            await locked.rollback()

            cancelled = await in_flight
            assert cancelled.status == jobs_pb2.JOB_STATUS_CANCELLED
    finally:
        await blocker.close()
    service.wait_event("jobs.stopped")
    assert service.process.wait(10) == 0


def run_with(workdir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.jobs"],
        cwd=workdir,
        env=clean_env(**{"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none", **FREE_PORTS, **env}),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("JOBS_GRPC_PORT", "not-a-port"),
        ("JOBS_METRICS_PORT", "70000"),
        ("LOG_LEVEL", "LOUD"),
        ("APP_ENV", "moon"),
        ("HEALTH_CHECK_INTERVAL", "-1"),
        ("DB_POOL_SIZE", "0"),
        ("JOBS_LIST_MAX_SKIP", "-5"),
    ],
)
def test_bad_setting_stops_start_up_naming_the_variable(workdir: Path, variable: str, value: str) -> None:
    result = run_with(workdir, **{variable: value})

    assert result.returncode == 2
    assert f"configuration error: {variable}:" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("secrets", "named"),
    [
        ({}, "SECRET_KEY"),
        ({"SECRET_KEY": "change-me-secret-key", "API_KEY": "a1b2c3d4e5f60718293a4b5c6d7e8f90"}, "SECRET_KEY"),
        ({"SECRET_KEY": "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f"}, "API_KEY"),
        ({"SECRET_KEY": "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f", "API_KEY": ""}, "API_KEY"),
        ({"SECRET_KEY": "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f", "API_KEY": "short-key"}, "API_KEY"),
    ],
)
def test_production_refuses_unset_or_example_secrets(workdir: Path, secrets: dict[str, str], named: str) -> None:
    result = run_with(workdir, APP_ENV="production", **secrets)

    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_example_env_file_is_a_valid_configuration(workdir: Path) -> None:
    shutil.copy(ROOT / ".env.example", workdir / ".env")
    code = (
        "from services.jobs.settings import JobsSettings; from services.worker.settings import WorkerSettings; "
        "from services.providers.settings import ProvidersSettings; "
        "from services.gateway.settings import GatewaySettings; "
        "WorkerSettings(); ProvidersSettings(); GatewaySettings(); print(JobsSettings().jobs_grpc_port)"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], cwd=workdir, env=clean_env(), capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "50051"
