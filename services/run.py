"""`make run`: every process of the system on one machine, in the foreground.

Resolves PostgreSQL and Redis (embedded ones under DATA_DIR when DATABASE_URL / REDIS_URL are
unset), migrates once, starts each service as a child process, waits until each reports SERVING,
prints where everything listens, and on Ctrl-C or SIGTERM stops them all gracefully.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.core import migrate
from services.core.embedded import resolve_database_url, resolve_redis_url
from services.core.logging import configure_logging, get_logger
from services.core.settings import CoreSettings, load_settings

log = get_logger("services.run")
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class Child:
    """A service process of the system and where its health is asked."""

    name: str
    module: str
    health_target: str
    health_service: str


def children(settings: CoreSettings) -> list[Child]:
    """The processes of contract.md's table that exist so far."""
    return [
        Child("jobs", "services.jobs", f"127.0.0.1:{settings.jobs_grpc_port}", "videogen.v1.JobService"),
        Child(
            "providers",
            "services.providers",
            f"127.0.0.1:{settings.providers_grpc_port}",
            "videogen.v1.ProviderService",
        ),
        Child("worker", "services.worker", f"127.0.0.1:{settings.worker_grpc_port}", "videogen.v1.WorkerService"),
    ]


def wait_serving(child: Child, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Blocks until the child's grpc.health.v1 says SERVING; fails if it exits first."""
    request = health_pb2.HealthCheckRequest(service=child.health_service)
    with grpc.insecure_channel(child.health_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{child.name} exited with code {process.returncode} while starting")
            try:
                if health.Check(request, timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{child.name} did not report SERVING within {READY_TIMEOUT:.0f}s")


def banner(settings: CoreSettings, database_url: str, redis_url: str) -> str:
    """What is listening where, for the person who typed `make run`."""
    rows = [
        ("jobs (gRPC)", f"127.0.0.1:{settings.jobs_grpc_port}  videogen.v1.JobService"),
        ("jobs metrics", f"http://127.0.0.1:{settings.jobs_metrics_port}/metrics"),
        ("providers (gRPC)", f"127.0.0.1:{settings.providers_grpc_port}  videogen.v1.ProviderService"),
        ("providers metrics", f"http://127.0.0.1:{settings.providers_metrics_port}/metrics"),
        ("worker (gRPC)", f"127.0.0.1:{settings.worker_grpc_port}  videogen.v1.WorkerService"),
        ("worker metrics", f"http://127.0.0.1:{settings.worker_metrics_port}/metrics"),
        ("media", str(settings.media_root.resolve())),
        ("database", database_url),
        ("redis", redis_url),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"  {name:<{width}}  {where}" for name, where in rows]
    return "\nVideoGen is running (Ctrl-C stops it):\n" + "\n".join(lines) + "\n\n"


def stop_all(processes: dict[str, subprocess.Popen[bytes]], grace: float) -> int:
    """SIGTERM to every child, SIGKILL to those still running after grace; the worst exit code."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    worst = 0
    for name, process in processes.items():
        try:
            code = process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("run.killing", service=name)
            process.kill()
            code = process.wait()
        if code not in (0, -signal.SIGTERM, -signal.SIGINT):
            worst = worst or code
    return worst


def main() -> None:
    """Starts the system and blocks until a signal or a child's unexpected exit."""
    settings = load_settings(CoreSettings)
    configure_logging(service="run", level=settings.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    database_url = resolve_database_url(settings)
    redis_url = resolve_redis_url(settings)
    asyncio.run(migrate.upgrade_when_reachable(database_url, timeout=60))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MIGRATE_ON_START": "false",
        # Everything runs on this machine: each service finds the others on loopback.
        "JOBS_TARGET": f"127.0.0.1:{settings.jobs_grpc_port}",
        "PROVIDERS_TARGET": f"127.0.0.1:{settings.providers_grpc_port}",
        "WORKER_TARGET": f"127.0.0.1:{settings.worker_grpc_port}",
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    code = 0
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        for child in children(settings):
            processes[child.name] = subprocess.Popen([sys.executable, "-m", child.module], env=env)
            wait_serving(child, processes[child.name], deadline)
        sys.stdout.write(banner(settings, database_url, redis_url))
        sys.stdout.flush()
        log.info("run.ready", services=sorted(processes))
        while not stop.wait(0.5):
            for name, process in processes.items():
                if process.poll() is not None:
                    log.error("run.child_exited", service=name, code=process.returncode)
                    code = 1
                    stop.set()
    except (RuntimeError, TimeoutError) as exc:
        log.error("run.start_failed", error=str(exc))
        code = 1
    finally:
        log.info("run.stopping")
        code = stop_all(processes, settings.shutdown_grace + settings.shutdown_drain_delay + 5) or code
        log.info("run.stopped")
    raise SystemExit(code)


if __name__ == "__main__":
    main()
