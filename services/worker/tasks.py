"""The Celery task: thin and idempotent; the retry policy is declared here, with the task."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

import redis
import structlog
from celery import Celery, Task
from celery.signals import worker_process_init, worker_process_shutdown

from services.core import tracing
from services.core.auth import service_metadata
from services.core.channels import sync_channel
from services.core.generators.base import ProviderError
from services.core.generators.kinds import build_providers
from services.core.generators.registry import RegistryConfig, load_registry
from services.core.logging import get_logger
from services.core.storage import create_storage
from services.core.tasks import CANCEL_PROVIDER_TASK, GENERATE_VIDEO, GenerateVideo, broker_redis_url
from services.worker.jobs_client import JobsClient, JobsUnavailable
from services.worker.routing import Router
from services.worker.runner import JobRunner, RetryPolicy
from services.worker.settings import WorkerSettings
from services.worker.slots import ProviderSlots
from videogen.v1 import lifecycle_pb2_grpc, routing_pb2_grpc

log = get_logger(__name__)
# While the jobs service is unreachable a message waits this long between tries, at most.
UNAVAILABLE_BACKOFF_MAX = 30.0


def retry_policy(settings: WorkerSettings) -> RetryPolicy:
    """The seed's retry policy, numbers from settings."""
    return RetryPolicy(
        base=settings.job_retry_backoff_base,
        max_delay=settings.job_retry_backoff_max,
        jitter=settings.job_retry_jitter,
    )


def build_runner(settings: WorkerSettings, registry: RegistryConfig, *, broker: str) -> JobRunner:
    """The runner of one worker process, with its own channels to the jobs and providers services."""
    credentials = service_metadata(settings.secret_key.get_secret_value())
    concurrency = {c.name: c.max_concurrency for c in registry.providers if c.max_concurrency is not None}
    slots = None
    if concurrency:
        client = redis.Redis.from_url(broker_redis_url(broker), socket_timeout=5)
        slots = ProviderSlots(client, key_prefix=settings.celery_key_prefix)
    return JobRunner(
        jobs=JobsClient(
            lifecycle_pb2_grpc.JobLifecycleServiceStub(sync_channel(settings.jobs_target)),
            timeout=settings.worker_rpc_timeout,
            credentials=credentials,
            patience=settings.worker_outage_patience,
        ),
        storage=create_storage(settings.media_root, settings),
        providers=build_providers(registry),
        router=Router(
            routing_pb2_grpc.ProviderRoutingServiceStub(sync_channel(settings.providers_target)),
            registry=registry,
            timeout=settings.worker_rpc_timeout,
            credentials=credentials,
            patience=settings.worker_outage_patience,
            ttl=settings.worker_routing_table_ttl,
        ),
        policy=retry_policy(settings),
        progress_interval=settings.worker_progress_interval,
        rpc_timeout=settings.worker_rpc_timeout,
        heartbeat_interval=settings.worker_heartbeat_interval,
        concurrency=concurrency,
        slots=slots,
    )


class ProcessRunners:
    """One runner per process, made after the fork (gRPC must not cross a fork)."""

    def __init__(self, settings: WorkerSettings, registry: RegistryConfig, *, broker: str) -> None:
        self._settings, self._registry, self._broker = settings, registry, broker
        self._runners: dict[int, JobRunner] = {}

    def get(self) -> JobRunner:
        """This process's runner."""
        pid = os.getpid()
        if pid not in self._runners:
            self._runners[pid] = build_runner(self._settings, self._registry, broker=self._broker)
        return self._runners[pid]

    def flush(self, **_: object) -> None:
        """When a child ends (recycled by worker_max_memory_per_child, or stopped): the provider
        outcomes its router still batches are sent, so that health misses none of its calls."""
        found = self._runners.get(os.getpid())
        if found is not None:
            found.flush(timeout=self._settings.worker_rpc_timeout)


def connect_tracing(settings: WorkerSettings) -> None:
    """Tracing in each pool child, when OTEL_EXPORTER_OTLP_ENDPOINT is set: started after the
    fork (an exporter's thread does not live through one), its last spans sent at exit."""

    def start_tracing(**_: object) -> None:
        tracing.configure_tracing("worker", endpoint=settings.otel_exporter_otlp_endpoint)

    def stop_tracing(**_: object) -> None:
        tracing.shutdown_tracing()

    worker_process_init.connect(start_tracing, weak=False)
    worker_process_shutdown.connect(stop_tracing, weak=False)


def task_span(request: Any, *, job_id: str, attempt: int) -> AbstractContextManager[object]:
    """The task's CONSUMER span, child of the trace its message's headers carry (Celery sets
    each header of the message on the task's request)."""
    carrier = {
        name: value for name in ("traceparent", "tracestate") if isinstance(value := getattr(request, name, None), str)
    }
    return tracing.server_span(
        f"celery {GENERATE_VIDEO}",
        carrier,
        kind="consumer",
        attributes={"messaging.system": "celery", "videogen.job_id": job_id, "videogen.attempt": attempt},
    )


def run_attempt(task: Task, payload: GenerateVideo, runner: JobRunner) -> str:
    """generate_video's body: the attempt in the task's span and log context; a jobs service that
    did not answer the start sends the message again, naming this delivery."""
    # The process is part of the id: only this very process may resume the attempt it started
    # when it asks again (a redelivered copy of the message is another worker), or a retry of
    # the message this process sent after giving up on its start (it names this id).
    worker_id = f"{task.request.hostname}/{os.getpid()}/{task.request.id}"
    structlog.contextvars.bind_contextvars(
        request_id=payload.request_id, job_id=payload.job_id, task_id=task.request.id
    )
    try:
        with task_span(task.request, job_id=payload.job_id, attempt=payload.attempt):
            return runner.run(payload, worker_id=worker_id)
    except JobsUnavailable as exc:
        # The start may have landed with its answer lost (the database went down under its
        # commit): the retry may take this process's attempt over rather than be refused.
        countdown = min(UNAVAILABLE_BACKOFF_MAX, 2.0 ** min(task.request.retries, 5))
        again = payload.resumed_by(worker_id).to_kwargs()
        raise task.retry(exc=exc, countdown=countdown, kwargs=again) from exc
    finally:
        structlog.contextvars.unbind_contextvars("request_id", "job_id", "task_id")


def register_tasks(app: Celery, settings: WorkerSettings) -> None:
    """Declares generate_video on app; each worker process builds its runner on first use."""
    registry = load_registry(settings.providers_config)
    # Building each provider reads what its entry names (a comfyui workflow file): a bad one stops
    # the worker at start, as a bad registry does, rather than failing each job's first attempt.
    build_providers(registry)
    runners = ProcessRunners(settings, registry, broker=str(app.conf.broker_url))
    worker_process_shutdown.connect(runners.flush, weak=False)
    connect_tracing(settings)
    runner = runners.get

    @app.task(name=GENERATE_VIDEO, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)  # type: ignore[untyped-decorator]
    def generate_video(
        self: Task,
        job_id: str,
        attempt: int,
        request_id: str | None = None,
        resumes: list[str] | None = None,
        **_: Any,
    ) -> str:
        """One attempt of one job; a duplicate or stale message is skipped by the conditional start."""
        payload = GenerateVideo(job_id=job_id, attempt=attempt, request_id=request_id, resumes=tuple(resumes or ()))
        return run_attempt(self, payload, runner())

    @app.task(name=CANCEL_PROVIDER_TASK, bind=True, acks_late=True, max_retries=3)  # type: ignore[untyped-decorator]
    def cancel_provider_task(self: Task, job_id: str, provider: str, task_id: str, **_: Any) -> str:
        """Cancels a provider task its job no longer wants and no worker will come back for."""
        structlog.contextvars.bind_contextvars(job_id=job_id, task_id=self.request.id)
        try:
            found = runner().provider(provider)
            if found is None:
                log.warning("job.provider_task_unknown_provider", provider=provider)
                return "unknown provider"
            try:
                found.cancel(task_id, timeout=settings.worker_rpc_timeout)
            except ProviderError as exc:
                log.warning("job.provider_task_not_cancelled", provider=provider, error=str(exc))
                raise self.retry(exc=exc, countdown=10) from exc
            log.info("job.provider_task_cancelled", provider=provider)
            return "cancelled"
        finally:
            structlog.contextvars.unbind_contextvars("job_id", "task_id")
