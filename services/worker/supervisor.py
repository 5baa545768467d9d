"""The worker service's supervisor: the Celery worker as a child, restarted when it dies.

It starts the Celery worker (`services.worker.celery_main`, a prefork pool) as its child, and
serves beside it WorkerService and grpc.health.v1 on WORKER_GRPC_PORT and the Prometheus metrics
of every Celery process on WORKER_METRICS_PORT (multi-process mode). The supervisor never forks
after gRPC starts: the child is a separate program.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from services.core.auth import CallGuard
from services.core.channels import aio_channel
from services.core.embedded import resolve_redis_url
from services.core.grpc_server import ServiceBinding, start_grpc_app, wait_for_stop_signal, watch_dependency
from services.core.logging import get_logger
from services.core.metrics import start_metrics_server
from services.core.restarts import RestartBudget
from services.core.tasks import broker_url, create_celery
from services.worker.servicer import WorkerServicer
from services.worker.settings import WorkerSettings
from services.worker.stats import QueueDepthCollector, gather_stats
from videogen.v1 import worker_pb2, worker_pb2_grpc

log = get_logger("services.worker")
SERVICE = worker_pb2.DESCRIPTOR.services_by_name["WorkerService"]
JOBS_SERVICE = "videogen.v1.JobService"


def start_celery(settings: WorkerSettings, redis_url: str, metrics_dir: Path) -> subprocess.Popen[bytes]:
    """The Celery worker as a child process, its metrics written to metrics_dir."""
    env = {**os.environ, "REDIS_URL": redis_url, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    return subprocess.Popen([sys.executable, "-m", "services.worker.celery_main"], env=env)


def metrics_registry(metrics_dir: Path, client: redis.Redis, settings: WorkerSettings) -> CollectorRegistry:
    """The Celery children's metrics, the queue depths, and this process's own gRPC metrics."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    registry.register(QueueDepthCollector(client, settings))
    registry.register(_Forward(REGISTRY))
    return registry


class _Forward(Collector):
    """Exposes another registry's metrics through this one."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source.collect()


class CeleryChild:
    """The Celery worker child, started again when it dies (a crash, an OOM kill), at most
    5 times a minute; past that the supervisor gives up and exits."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self._start = start
        self.process = start()
        self._restarts = RestartBudget()

    def alive(self) -> bool:
        """Whether the child runs now."""
        return self.process.poll() is None

    async def run_until_signal(self) -> int:
        """Watches the child until SIGTERM or SIGINT (0), or until it dies too often (1)."""
        signal_task = asyncio.create_task(wait_for_stop_signal())
        while True:
            child_task = asyncio.create_task(asyncio.to_thread(self.process.wait))
            done, _ = await asyncio.wait({signal_task, child_task}, return_when=asyncio.FIRST_COMPLETED)
            if signal_task in done:
                log.info("worker.stopping", signal=signal_task.result().name)
                return 0
            if not self._restarts.allow():
                signal_task.cancel()
                restarts = self._restarts.recent
                log.error("worker.celery_exited", code=self.process.returncode, restarts_last_minute=restarts)
                return 1
            log.warning("worker.celery_restarting", code=self.process.returncode, pid=self.process.pid)
            await asyncio.sleep(min(5.0, 0.5 * 2 ** (self._restarts.recent - 1)))
            self.process = self._start()
            log.info("worker.celery_restarted", pid=self.process.pid)


async def dependencies_answer(client: redis.Redis, jobs: health_pb2_grpc.HealthStub, child: CeleryChild) -> bool:
    """SERVING needs Redis, the jobs service and the Celery child."""
    if not child.alive():
        return False
    try:
        async with asyncio.timeout(2):
            await asyncio.to_thread(client.ping)
        reply = await jobs.Check(health_pb2.HealthCheckRequest(service=JOBS_SERVICE), timeout=2)
    except (redis.RedisError, grpc.aio.AioRpcError, TimeoutError):
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def serve(settings: WorkerSettings) -> int:
    """Runs until a signal or the Celery child's exit; answers the exit code."""
    redis_url = resolve_redis_url(settings)
    metrics_dir = settings.data_dir.resolve() / "worker-metrics" / str(os.getpid())
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    child = CeleryChild(lambda: start_celery(settings, redis_url, metrics_dir))
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    celery = create_celery(settings, broker=broker_url(settings, redis_url), name="videogen-worker-stats")
    metrics = start_metrics_server(
        host=settings.metrics_bind_host,
        port=settings.worker_metrics_port,
        registry=metrics_registry(metrics_dir, client, settings),
    )
    stats = WorkerServicer(lambda: gather_stats(celery, client, settings, timeout=settings.worker_stats_timeout))
    binding = ServiceBinding(stats, worker_pb2_grpc.add_WorkerServiceServicer_to_server, SERVICE, internal=True)
    app = await start_grpc_app(
        [binding],
        address=f"{settings.grpc_bind_host}:{settings.worker_grpc_port}",
        max_message_bytes=settings.grpc_max_message_bytes,
        # Internal: its stats are the operators'; the worker checks no API keys.
        guard=CallGuard(
            secret_key=settings.secret_key.get_secret_value(),
            internal=frozenset({SERVICE.full_name}),
            authenticator=None,
        ),
    )
    async with aio_channel(settings.jobs_target) as jobs_channel:
        jobs_health = health_pb2_grpc.HealthStub(jobs_channel)
        watcher = asyncio.create_task(
            watch_dependency(
                app,
                lambda: dependencies_answer(client, jobs_health, child),
                interval=settings.health_check_interval,
                name="redis+jobs+celery",
            )
        )
        log.info("worker.serving", grpc_port=app.port, metrics_port=metrics.port, celery_pid=child.process.pid)
        code = await child.run_until_signal()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await app.health.enter_graceful_shutdown()
        await _stop_child(child.process, settings.shutdown_grace)
        await app.stop(1)
    metrics.stop()
    celery.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("worker.stopped", code=code)
    return code


async def _stop_child(child: subprocess.Popen[bytes], grace: float) -> None:
    """Warm shutdown of Celery (running tasks finish) within grace, then a hard kill.

    A task killed this way is not lost: its message is unacknowledged and comes back."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(grace):
            await asyncio.to_thread(child.wait)
    except TimeoutError:
        log.warning("worker.celery_killed", grace_seconds=grace)
        child.kill()
        await asyncio.to_thread(child.wait)
