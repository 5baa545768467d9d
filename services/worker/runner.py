"""The body of the generation task: start, generate, store, complete, all through JobService."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from billiard.exceptions import SoftTimeLimitExceeded

from services.core.logging import get_logger
from services.core.providers.base import (
    InvalidOptions,
    JobCancelled,
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    VideoProvider,
)
from services.core.storage import MediaStorage
from services.core.tasks import GenerateVideo
from services.worker import metrics
from services.worker.routing import Router, RoutingUnavailable, Unroutable
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

log = get_logger(__name__)
_SKIP = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


class JobsUnavailable(Exception):
    """The jobs service did not answer; the message should be tried again later."""


class AttemptFailed(Exception):
    """Every provider this attempt could use failed; the job may be retried."""

    def __init__(self, message: str, provider: str) -> None:
        super().__init__(message)
        self.provider = provider


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: base * 2**retry_count, at most max_delay seconds."""

    base: float = 60.0
    max_delay: float = 3600.0
    jitter: bool = True

    def delay(self, retry_count: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt retry_count + 2; with jitter, in [delay/2, delay]."""
        ceiling = float(min(self.max_delay, self.base * 2 ** min(retry_count, 32)))
        if not self.jitter:
            return ceiling
        return ceiling / 2 + float((rng or random).random()) * ceiling / 2


class JobRunner:
    """Runs one attempt of a job in a worker process."""

    def __init__(
        self,
        *,
        jobs: jobs_pb2_grpc.JobServiceStub,
        storage: MediaStorage,
        providers: dict[str, VideoProvider],
        router: Router,
        policy: RetryPolicy,
        progress_interval: float,
        rpc_timeout: float,
    ) -> None:
        self._jobs = jobs
        self._storage = storage
        self._providers = providers
        self._router = router
        self._policy = policy
        self._progress_interval = progress_interval
        self._timeout = rpc_timeout

    def run(self, payload: GenerateVideo, *, worker_id: str) -> str:
        """Runs the attempt and answers its outcome."""
        job = self._start(payload, worker_id)
        if job is None:
            metrics.JOB_ATTEMPTS.labels("skipped").inc()
            return "skipped"
        started = time.monotonic()
        outcome = self._attempt(job, payload)
        if outcome in ("completed", "failed"):
            metrics.JOB_PROCESSING_TIME.observe(time.monotonic() - started)
        if outcome in ("completed", "failed", "cancelled"):
            metrics.JOB_COMPLETION.labels(outcome).inc()
        metrics.JOB_ATTEMPTS.labels(outcome).inc()
        log.info("job.attempt_finished", job_id=job.id, outcome=outcome, seconds=round(time.monotonic() - started, 3))
        return outcome

    def _call(self, method: str, request: Any, request_id: str | None) -> Any:
        metadata = (("x-request-id", request_id),) if request_id else ()
        return getattr(self._jobs, method)(request, timeout=self._timeout, metadata=metadata)

    def _start(self, payload: GenerateVideo, worker_id: str) -> jobs_pb2.Job | None:
        request = jobs_pb2.StartJobRequest(id=payload.job_id, worker_id=worker_id, attempt=payload.attempt)
        try:
            job: jobs_pb2.Job = self._call("StartJob", request, payload.request_id)
        except grpc.RpcError as exc:
            if exc.code() in _SKIP:
                log.info("job.skipped", job_id=payload.job_id, attempt=payload.attempt, reason=exc.details())
                return None
            raise JobsUnavailable(f"StartJob: {exc.code().name}") from exc
        return job

    def _attempt(self, job: jobs_pb2.Job, payload: GenerateVideo) -> str:
        key = f"{job.id}.mp4"
        partial = self._storage.partial_path(key)
        metadata = json.loads(job.metadata_json or "{}")
        try:
            name, video, elapsed_ms = self._generate(job, metadata, partial, payload.request_id)
            stored = self._storage.store(partial, key)
            result = jobs_pb2.VideoResult(
                video_url=stored.url,
                content_type=video.content_type,
                duration_seconds=video.duration_seconds,
                width=video.width,
                height=video.height,
                fps=video.fps,
                size_bytes=stored.size_bytes,
                storage_key=stored.key,
            )
            request = jobs_pb2.CompleteJobRequest(
                id=job.id, result=result, used_provider=name, used_model=video.model, generation_time_ms=elapsed_ms
            )
            return self._complete(request, key, payload.request_id)
        except JobCancelled:
            log.info("job.stopped_cancelled", job_id=job.id)
            return "cancelled"
        except (InvalidOptions, Unroutable) as exc:
            return self._fail(job, str(exc), payload.request_id, provider=getattr(exc, "provider", ""))
        except (SoftTimeLimitExceeded, Exception) as exc:
            log.warning("job.attempt_failed", job_id=job.id, error=repr(exc))
            return self._retry_or_fail(job, _describe(exc), payload.request_id, provider=getattr(exc, "provider", ""))
        finally:
            partial.unlink(missing_ok=True)

    def _generate(
        self, job: jobs_pb2.Job, metadata: dict[str, Any], partial: Path, request_id: str | None
    ) -> tuple[str, RenderedVideo, int]:
        """Generates with the provider routing picks, failing over to the next one on a provider
        error; a provider the client named gets no substitute."""
        named, wanted = metadata.get("provider"), metadata.get("model")
        requested = named if isinstance(named, str) else None
        model = wanted if isinstance(wanted, str) else ""
        tried: list[str] = []
        failure: AttemptFailed | None = None
        while True:
            try:
                choice = self._router.select(job.id, requested=requested, model=model, exclude=tried)
            except RoutingUnavailable:
                # No provider is left to fail over to: the attempt fails with the last provider's error.
                if failure is not None:
                    raise failure from None
                raise
            provider = self._providers.get(choice.provider)
            if provider is None:
                raise Unroutable(f"provider {choice.provider!r} is not configured on this worker", choice.provider)
            spec = provider.spec(job.prompt, metadata, model=choice.model)
            began = time.monotonic()
            try:
                video = provider.generate(spec, output=partial, progress=self._reporter(job.id, request_id))
            except ProviderError as exc:
                self._router.report(choice.provider, error=exc, latency_ms=(time.monotonic() - began) * 1000)
                tried.append(choice.provider)
                log.warning("job.provider_failed", job_id=job.id, provider=choice.provider, error=str(exc))
                failure = AttemptFailed(str(exc), choice.provider)
                if requested:
                    raise failure from exc
                continue
            elapsed_ms = int((time.monotonic() - began) * 1000)
            self._router.report(choice.provider, error=None, latency_ms=elapsed_ms)
            return choice.provider, video, elapsed_ms

    def _complete(self, request: jobs_pb2.CompleteJobRequest, key: str, request_id: str | None) -> str:
        try:
            self._call("CompleteJob", request, request_id)
        except grpc.RpcError as exc:
            if exc.code() not in _SKIP:
                raise
            # Cancelled while the video was being stored: it must never show as completed.
            self._storage.delete(key)
            return "cancelled"
        return "completed"

    def _fail(self, job: jobs_pb2.Job, error: str, request_id: str | None, *, provider: str) -> str:
        request = jobs_pb2.FailJobRequest(id=job.id, error_message=error)
        if provider:
            request.used_provider = provider[:64]
        try:
            self._call("FailJob", request, request_id)
        except grpc.RpcError as exc:
            if exc.code() not in _SKIP:
                raise
            return "cancelled"
        return "failed"

    def _retry_or_fail(self, job: jobs_pb2.Job, error: str, request_id: str | None, *, provider: str) -> str:
        if job.retry_count >= job.max_retries:
            return self._fail(job, error, request_id, provider=provider)
        delay = self._policy.delay(job.retry_count)
        request = jobs_pb2.RetryJobRequest(id=job.id, error_message=error, retry_after_seconds=delay)
        try:
            self._call("RetryJob", request, request_id)
        except grpc.RpcError as exc:
            if exc.code() not in _SKIP:
                raise
            return "cancelled"
        log.info("job.retry_scheduled", job_id=job.id, retry_count=job.retry_count + 1, delay_seconds=round(delay, 3))
        return "retried"

    def _reporter(self, job_id: str, request_id: str | None) -> ProgressCallback:
        """Reports progress at most every progress_interval; a refusal means the job was cancelled."""
        last = [0.0]

        def report(fraction: float, stage: str) -> None:
            now = time.monotonic()
            if now - last[0] < self._progress_interval and fraction < 1:
                return
            last[0] = now
            request = jobs_pb2.ReportProgressRequest(id=job_id, percent=min(99, int(fraction * 100)), stage=stage)
            try:
                self._call("ReportProgress", request, request_id)
            except grpc.RpcError as exc:
                if exc.code() in _SKIP:
                    raise JobCancelled(job_id) from exc
                log.warning("job.progress_unreported", job_id=job_id, error=exc.code().name)

        return report


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return "the attempt exceeded its time limit"
    text = str(exc).strip() or type(exc).__name__
    return text[:4000]
