"""`make run`: every process of the system on one machine, in the foreground.

Resolves PostgreSQL and Redis (embedded ones under DATA_DIR when DATABASE_URL / REDIS_URL are
unset), migrates once, starts each service as a child process (jobs, providers and worker as
many times as RUN_REPLICAS says, each replica on its own ports), waits until each reports SERVING,
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from services import probe
from services.core import migrate
from services.core.channels import loopback_target
from services.core.embedded import resolve_database_url, resolve_redis_url
from services.core.logging import configure_logging, get_logger
from services.core.redact import redact
from services.core.restarts import RestartBudget
from services.core.settings import load_settings
from services.edge import EdgeSettings, envoy_command, render_local
from services.topology import Replica, replicas

log = get_logger("services.run")
READY_TIMEOUT = 120.0
# The edge's clusters, each listing every replica of its process.
UPSTREAMS = ("gateway", "jobs", "providers")


@dataclass(frozen=True)
class Child:
    """A process of the system, what its environment adds (a replica's ports), and how to know it
    is ready: gRPC health, or an HTTP GET."""

    name: str
    command: tuple[str, ...]
    health_target: str = ""
    health_service: str = ""
    ready_url: str = ""
    env: dict[str, str] = field(default_factory=dict)


def python(module: str) -> tuple[str, ...]:
    """The command that runs a module of this project."""
    return (sys.executable, "-m", module)


def ports_of(settings: EdgeSettings, name: str) -> list[int]:
    """The serving ports of every replica of a process."""
    return [r.port(settings) for r in replicas(settings.replica_counts) if r.process.name == name]


def children(settings: EdgeSettings) -> list[Child]:
    """The processes of contract.md's table (services/topology.py), each replica of RUN_REPLICAS
    once, in start-up order; the edge balances over every replica of a cluster."""
    edge_config = render_local(
        edge_port=settings.edge_port,
        admin_port=settings.envoy_admin_port,
        metrics_port=settings.envoy_metrics_port,
        upstreams={name: [("127.0.0.1", port) for port in ports_of(settings, name)] for name in UPSTREAMS},
        out=settings.data_dir / "envoy.yaml",
        bind_host=settings.edge_host,
        rate_limit=settings.rate_limit,
        tls=settings.tls,
    )
    return [child_of(replica, settings, edge_config) for replica in replicas(settings.replica_counts)]


def child_of(replica: Replica, settings: EdgeSettings, edge_config: Path) -> Child:
    """How to start one replica and know it is ready."""
    process = replica.process
    command = python(process.module) if process.module else tuple(envoy_command(edge_config))
    env = replica.port_env(settings) if replica.index else {}
    if replica.index and process.name == "worker":
        # Celery's node name (WORKER_NAME@host) tells the replicas apart in stats and job records.
        env["WORKER_NAME"] = f"{os.environ.get('WORKER_NAME', 'worker')}-{replica.index + 1}"
    if process.protocol == "grpc":
        return Child(replica.name, command, f"127.0.0.1:{replica.port(settings)}", process.health_service, env=env)
    url = f"http://127.0.0.1:{replica.health_port(settings)}{process.health_path}"
    return Child(replica.name, command, ready_url=url, env=env)


def is_ready(child: Child) -> bool:
    """One readiness check of the child (the containers' healthcheck, services.probe)."""
    if child.ready_url:
        return probe.check_http(child.ready_url, timeout=1) is None
    return probe.check_grpc(child.health_target, child.health_service, timeout=1) is None


def wait_serving(child: Child, process: subprocess.Popen[bytes], deadline: float) -> None:
    """Blocks until the child is ready; fails if it exits first."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with code {process.returncode} while starting")
        if is_ready(child):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{child.name} was not ready within {READY_TIMEOUT:.0f}s")


def banner(settings: EdgeSettings, database_url: str, redis_url: str) -> str:
    """What is listening where, for the person who typed `make run`; never a password."""
    edge = f"{_reachable(settings.edge_host)}:{settings.edge_port}"
    scheme, grpc = ("https", "gRPC (edge, TLS)") if settings.tls is not None else ("http", "gRPC (edge, h2c)")
    rows = [
        ("web console", f"{scheme}://{edge}/ui/"),
        ("REST API (edge)", f"{scheme}://{edge}/api/v1/jobs"),
        ("API docs", f"{scheme}://{edge}/docs"),
        ("readiness", f"{scheme}://{edge}/health/ready"),
        (grpc, f"{edge}  videogen.v1.JobService, ProviderService"),
        ("gateway", f"http://127.0.0.1:{settings.api_port}"),
        ("envoy admin", f"http://127.0.0.1:{settings.envoy_admin_port}"),
        ("envoy metrics", f"http://127.0.0.1:{settings.envoy_metrics_port}/stats/prometheus"),
        *replica_rows(settings),
        ("media", _media(settings)),
        ("database", database_url),
        ("redis", redis_url),
    ]
    width = max(len(name) for name, _ in rows)
    # A URL's password (DATABASE_URL's, REDIS_URL's, an S3 endpoint's) shows as ***.
    lines = [f"  {name:<{width}}  {redact(where)}" for name, where in rows]
    return "\nVideoGen is running (Ctrl-C stops it):\n" + "\n".join(lines) + "\n\n"


def replica_rows(settings: EdgeSettings) -> list[tuple[str, str]]:
    """The gRPC and metrics ports of each replica of the gRPC services."""
    rows = []
    for replica in replicas(settings.replica_counts):
        if replica.process.protocol == "grpc":
            grpc_port, metrics_port = replica.port(settings), replica.metrics_port(settings)
            rows.append((f"{replica.name} (gRPC)", f"127.0.0.1:{grpc_port}  {replica.process.health_service}"))
            rows.append((f"{replica.name} metrics", f"http://127.0.0.1:{metrics_port}/metrics"))
    return rows


def _reachable(host: str) -> str:
    """An address of host that a client on this machine can connect to (for URLs)."""
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _media(settings: EdgeSettings) -> str:
    """Where the videos go: the directory, or the bucket (never the keys)."""
    if settings.media_backend == "s3":
        endpoint = settings.s3_endpoint_url or f"AWS S3 ({settings.s3_region})"
        return f"s3://{settings.s3_bucket}/{settings.s3_key_prefix}  at {endpoint}"
    return str(settings.media_root.resolve())


def start(child: Child, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Starts the child with the shared environment plus its own."""
    return subprocess.Popen(list(child.command), env={**env, **child.env})


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


def child_env(settings: EdgeSettings, database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of every child: this one, with the servers resolved and the siblings' addresses."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "MIGRATE_ON_START": "false",
        # Everything runs on this machine: each service finds the others (every replica) on
        # loopback, and its channels spread the calls round-robin (services/core/channels.py).
        "JOBS_TARGET": loopback_target(ports_of(settings, "jobs")),
        "PROVIDERS_TARGET": loopback_target(ports_of(settings, "providers")),
        "WORKER_TARGET": loopback_target(ports_of(settings, "worker")),
    }


def supervise(
    started: Sequence[Child], processes: dict[str, subprocess.Popen[bytes]], env: dict[str, str], stop: threading.Event
) -> int:
    """Restarts a child that exits (within its budget) until stop is set; 1 when one had to give up."""
    restarts = {child.name: RestartBudget() for child in started}
    by_name = {child.name: child for child in started}
    while not stop.wait(0.5):
        for name, process in list(processes.items()):
            if process.poll() is None:
                continue
            if not restarts[name].allow():
                log.error("run.child_exited", service=name, code=process.returncode)
                stop.set()
                return 1
            # A crash (an OOM kill, a kill -9) restarts the process, as a supervisor would.
            log.warning("run.child_restarting", service=name, code=process.returncode)
            processes[name] = start(by_name[name], env)
            log.info("run.child_restarted", service=name, pid=processes[name].pid)
    return 0


def main() -> None:
    """Starts the system and blocks until a signal or a child's unexpected exit."""
    settings = load_settings(EdgeSettings)
    configure_logging(service="run", level=settings.log_level)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    database_url = resolve_database_url(settings)
    redis_url = resolve_redis_url(settings)
    asyncio.run(migrate.upgrade_when_reachable(database_url, timeout=60))
    env = child_env(settings, database_url, redis_url)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    code = 0
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        started = children(settings)
        for child in started:
            processes[child.name] = start(child, env)
            wait_serving(child, processes[child.name], deadline)
        sys.stdout.write(banner(settings, database_url, redis_url))
        sys.stdout.flush()
        log.info("run.ready", services=sorted(processes))
        code = supervise(started, processes, env, stop)
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
