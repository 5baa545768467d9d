"""`make run` (python -m services.run) starts the system, reports it ready, and stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import socket
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.edge import EdgeSettings
from services.run import banner
from services.topology import REPLICA_PORT_STEP
from tests.support.certificates import make_server_certificate
from tests.support.local_run import local_run
from tests.support.processes import free_port
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, lifecycle_pb2, lifecycle_pb2_grpc


async def test_run_starts_the_system_runs_a_job_and_stops_on_ctrl_c(own_database_url: str, redis_url: str) -> None:
    trace = f"trace-{uuid.uuid4().hex[:8]}"
    with local_run(own_database_url, redis_url, name="run") as system:
        run = system.process
        grpc_port, worker_port = system.port("JOBS_GRPC_PORT"), system.port("WORKER_GRPC_PORT")
        providers_port, edge_port = system.port("PROVIDERS_GRPC_PORT"), system.port("EDGE_PORT")
        run.wait_event("run.ready", timeout=120)
        for port in (grpc_port, providers_port, worker_port):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}", timeout=30) as client:
            body = {"userId": "run-user", "prompt": "a red fox", "metadata": {"durationSeconds": 1, "width": 64,
                    "height": 64, "fps": 4}}  # fmt: skip
            headers = {"X-Request-ID": trace}
            job = (await client.post("/api/v1/jobs", json=body, headers=headers)).json()
            async with asyncio.timeout(60):
                while (job := (await client.get(f"/api/v1/jobs/{job['id']}")).json())["status"] != "completed":
                    await asyncio.sleep(0.1)
            video = await client.get(job["result"]["videoUrl"])
            assert (await client.get("/health/ready")).status_code == 200
        assert video.status_code == 200 and len(video.content) == job["result"]["sizeBytes"]
        # The edge logs the requests (within a second), the services what they did for them.
        async with asyncio.timeout(10):
            while not {"edge", "jobs", "worker"} <= {line.get("service") for line in run.events_with(request_id=trace)}:
                await asyncio.sleep(0.2)

        run.process.send_signal(signal.SIGINT)

        run.wait_event("run.stopped", timeout=30)
        assert run.process.wait(30) == 0
        assert "VideoGen is running" in run.output()


def child_pid(parent: int, module: str) -> int:
    """The pid of parent's child running `python -m module`."""
    for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if module.encode() in cmdline:
            return int(pid)
    raise LookupError(f"no child runs {module}")


async def test_run_restarts_a_crashed_service(own_database_url: str, redis_url: str) -> None:
    with local_run(own_database_url, redis_url, name="run") as system:
        run = system.process
        await asyncio.to_thread(run.wait_event, "run.ready", 120)
        crashed = child_pid(run.process.pid, "services.jobs")

        os.kill(crashed, signal.SIGKILL)

        restarted = await asyncio.to_thread(run.wait_event, "run.child_restarted", 30, service="jobs")
        assert restarted["pid"] != crashed
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{system.port('EDGE_PORT')}", timeout=30) as client:
            body = {"userId": "after-crash", "prompt": "a phoenix", "metadata": {"durationSeconds": 1, "width": 64,
                    "height": 64, "fps": 4}}  # fmt: skip
            async with asyncio.timeout(60):
                while (created := await client.post("/api/v1/jobs", json=body)).status_code == 503:
                    await asyncio.sleep(0.2)
                assert created.status_code == 201, created.text
                job = created.json()
                while (job := (await client.get(f"/api/v1/jobs/{job['id']}")).json())["status"] != "completed":
                    await asyncio.sleep(0.1)


def child_pids(parent: int, module: str) -> list[int]:
    """The pids of parent's children running `python -m module`."""
    found = []
    for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
        with contextlib.suppress(OSError):
            if module.encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                found.append(int(pid))
    return found


def is_free(port: int) -> bool:
    """Whether a TCP port of loopback can be bound now."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def replica_ports(*variables: str) -> dict[str, str]:
    """Free ports for these variables whose second replica's ports (+REPLICA_PORT_STEP) are free too."""
    chosen: dict[str, str] = {}
    taken: set[int] = set()
    for variable in variables:
        port = free_port()
        while not (port + REPLICA_PORT_STEP < 65536 and is_free(port + REPLICA_PORT_STEP)) or taken & {
            port,
            port + REPLICA_PORT_STEP,
        }:
            port = free_port()
        taken |= {port, port + REPLICA_PORT_STEP}
        chosen[variable] = str(port)
    return chosen


def calls_served(metrics: str, method: str) -> float:
    """How many calls of a method a service's /metrics says it started."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("grpc_server_started_total{") and f'grpc_method="{method}"' in line
    )


async def test_run_replicas_starts_two_of_each_and_the_edge_reaches_both_jobs_services(
    own_database_url: str, redis_url: str
) -> None:
    ports = replica_ports("JOBS_GRPC_PORT", "JOBS_METRICS_PORT", "WORKER_GRPC_PORT", "WORKER_METRICS_PORT")
    body = {"userId": "replicas", "prompt": "a fox", "metadata": {"durationSeconds": 1, "width": 64, "height": 64,
            "fps": 4}}  # fmt: skip
    with local_run(own_database_url, redis_url, name="replicas", RUN_REPLICAS="jobs=2,worker=2", **ports) as system:
        await asyncio.to_thread(system.process.wait_event, "run.ready", 120)
        pid = system.process.process.pid
        started = {module: len(child_pids(pid, module)) for module in ("services.jobs", "services.worker")}
        edge = f"127.0.0.1:{system.port('EDGE_PORT')}"
        async with httpx.AsyncClient(base_url=f"http://{edge}", timeout=30) as client:
            jobs = [(await client.post("/api/v1/jobs", json=body)).json() for _ in range(6)]
            async with asyncio.timeout(60):
                for job in jobs:
                    while (job := (await client.get(f"/api/v1/jobs/{job['id']}")).json())["status"] != "completed":
                        await asyncio.sleep(0.1)
        async with grpc.aio.insecure_channel(edge) as channel:
            for _ in range(30):
                await jobs_pb2_grpc.JobServiceStub(channel).ListJobs(jobs_pb2.ListJobsRequest())
        served = []
        for metrics_port in (int(ports["JOBS_METRICS_PORT"]), int(ports["JOBS_METRICS_PORT"]) + REPLICA_PORT_STEP):
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            served.append((calls_served(text, "CreateJob"), calls_served(text, "ListJobs")))
        output = system.process.output()

    assert started == {"services.jobs": 2, "services.worker": 2}
    # The gateway's channel (round_robin) alternates its creates; Envoy picks the less busy one.
    assert sum(creates for creates, _ in served) == 6
    assert all(creates > 0 and lists > 0 for creates, lists in served), served
    assert "jobs-2 (gRPC)" in output and "worker-2 (gRPC)" in output


def listening_addresses(port: int) -> set[str]:
    """The addresses that sockets listen on at port, IPv4 and IPv6, read from /proc/net."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word of the address in host (little-endian) order.
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                ip = ipaddress.ip_address(socket.inet_ntop(family, words))
                # gRPC listens on 127.0.0.1 through an IPv6 socket: ::ffff:127.0.0.1.
                found.add(str(getattr(ip, "ipv4_mapped", None) or ip))
    return found


async def test_run_exposes_the_edge_alone(own_database_url: str, redis_url: str) -> None:
    with local_run(own_database_url, redis_url, name="run", EDGE_BIND_HOST="0.0.0.0") as system:
        await asyncio.to_thread(system.process.wait_event, "run.ready", 120)

        bound = {variable: listening_addresses(int(port)) for variable, port in system.ports.items()}

    assert bound.pop("EDGE_PORT") == {"0.0.0.0"}
    assert bound and all(addresses == {"127.0.0.1"} for addresses in bound.values()), bound


def test_the_banner_names_https_urls_when_the_edge_has_a_certificate(tmp_path: Path) -> None:
    certificate = make_server_certificate(tmp_path)
    plain = EdgeSettings(_env_file=None, edge_port=8000)
    tls = EdgeSettings(
        _env_file=None, edge_port=8000, edge_tls_cert_file=certificate.cert_file, edge_tls_key_file=certificate.key_file
    )

    plain_text, tls_text = (
        banner(settings, "postgresql://db/videogen", "redis://redis/0") for settings in (plain, tls)
    )

    assert "http://127.0.0.1:8000/api/v1/jobs" in plain_text and "gRPC (edge, h2c)" in plain_text
    assert "https://127.0.0.1:8000/api/v1/jobs" in tls_text and "https://127.0.0.1:8000/docs" in tls_text
    assert "gRPC (edge, TLS)" in tls_text and "http://127.0.0.1:8000" not in tls_text


def test_the_banner_masks_the_passwords_of_the_database_and_redis_urls() -> None:
    text = banner(
        EdgeSettings(_env_file=None),
        "postgresql://videogen:pg-Secret-1@db.example.com:5432/videogen",
        "redis://:redis-Secret-2@redis.example.com:6379/0",
    )

    assert "postgresql://videogen:***@db.example.com:5432/videogen" in text
    assert "redis://:***@redis.example.com:6379/0" in text
    assert "Secret" not in text


PRODUCTION_SECRETS = {
    "APP_ENV": "production",
    "SECRET_KEY": "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f-run",
    "API_KEY": "a1b2c3d4e5f60718293a4b5c6d7e8f90-run",
    "EDGE_BIND_HOST": "127.0.0.1",
}


async def test_a_production_run_with_only_the_two_seed_secrets_serves_behind_keys(
    own_database_url: str, redis_url: str
) -> None:
    admin = {"X-API-Key": PRODUCTION_SECRETS["API_KEY"]}
    with local_run(own_database_url, redis_url, name="prod", **PRODUCTION_SECRETS) as system:
        await asyncio.to_thread(system.process.wait_event, "run.ready", 120)
        edge = f"127.0.0.1:{system.port('EDGE_PORT')}"
        async with httpx.AsyncClient(base_url=f"http://{edge}", timeout=30) as client:
            body = {"userId": "prod-user", "prompt": "a red fox", "metadata": {"durationSeconds": 1, "width": 64,
                    "height": 64, "fps": 4}}  # fmt: skip
            refused = await client.post("/api/v1/jobs", json=body)
            job = (await client.post("/api/v1/jobs", json=body, headers=admin)).json()
            async with asyncio.timeout(60):
                while (job := (await client.get(f"/api/v1/jobs/{job['id']}", headers=admin)).json())["status"] not in (
                    "completed",
                    "failed",
                ):
                    await asyncio.sleep(0.1)
            signed = await client.get(job["result"]["videoUrl"])
            ranged = await client.get(job["result"]["videoUrl"], headers={"Range": "bytes=0-9"})
            bare = await client.get(job["result"]["videoUrl"].split("?")[0])
        async with grpc.aio.insecure_channel(edge) as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as keyless:
                await jobs.ListJobs(jobs_pb2.ListJobsRequest())
            listed = await jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=(("x-api-key", admin["X-API-Key"]),))
            with pytest.raises(grpc.aio.AioRpcError) as internal:
                await lifecycle_pb2_grpc.JobLifecycleServiceStub(channel).StartJob(
                    lifecycle_pb2.StartJobRequest(id=job["id"], worker_id="x"),
                    metadata=(("x-api-key", admin["X-API-Key"]),),
                )
        output = system.process.output()

    assert refused.status_code == 401
    assert job["status"] == "completed", job  # the worker's service credential was taken
    assert (signed.status_code, ranged.status_code, bare.status_code) == (200, 206, 403)
    assert keyless.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [j.id for j in listed.jobs] == [job["id"]]
    assert internal.value.code() == grpc.StatusCode.UNIMPLEMENTED
    for secret in (PRODUCTION_SECRETS["SECRET_KEY"], PRODUCTION_SECRETS["API_KEY"]):
        assert secret not in output


def test_a_production_run_with_a_short_api_key_exits_naming_it(own_database_url: str, redis_url: str) -> None:
    with local_run(
        own_database_url, redis_url, name="prod", **{**PRODUCTION_SECRETS, "API_KEY": "short-key"}
    ) as system:
        code = system.process.process.wait(60)
        output = system.process.output()

    assert code != 0
    assert "API_KEY" in output and "short-key" not in output
