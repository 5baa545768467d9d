"""The body of the generation task: start, generate, store, complete, all through JobService."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from billiard.exceptions import SoftTimeLimitExceeded

from services.core.errors import InvalidArgument
from services.core.generators.base import (
    InvalidOptions,
    JobCancelled,
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    TaskCallback,
    VideoProvider,
)
from services.core.job.options import JobOptions
from services.core.logging import get_logger
from services.core.storage.base import MediaStorage
from services.core.tasks import GenerateVideo
from services.worker import metrics
from services.worker.routing import Choice, Router, RoutingUnavailable, Unroutable
from services.worker.slots import ProviderSlots
from videogen.v1 import jobs_pb2, lifecycle_pb2, lifecycle_pb2_grpc

log = get_logger(__name__)
_SKIP = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)


class JobsUnavailable(Exception):
    """The jobs service did not answer; the message should be tried again later."""


class AttemptFailed(Exception):
    """Every provider this attempt could use failed; the job may be retried (unless final)."""

    def __init__(self, message: str, provider: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.final = final


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
        jobs: lifecycle_pb2_grpc.JobLifecycleServiceStub,
        credentials: tuple[tuple[str, str], ...],
        storage: MediaStorage,
        providers: dict[str, VideoProvider],
        router: Router,
        policy: RetryPolicy,
        progress_interval: float,
        rpc_timeout: float,
        heartbeat_interval: float = 10.0,
        concurrency: Mapping[str, int] | None = None,
        slots: ProviderSlots | None = None,
    ) -> None:
        self._jobs = jobs
        # The service credential (services/core/auth.py), sent with every call.
        self._credentials = credentials
        self._storage = storage
        self._providers = providers
        self._router = router
        self._policy = policy
        self._progress_interval = progress_interval
        self._timeout = rpc_timeout
        self._heartbeat_interval = heartbeat_interval
        # Providers' caps on our jobs running there at once, held in slots across workers.
        self._concurrency = dict(concurrency or {})
        self._slots = slots

    def provider(self, name: str) -> VideoProvider | None:
        """The configured provider called name."""
        return self._providers.get(name)

    def run(self, payload: GenerateVideo, *, worker_id: str) -> str:
        """Runs the attempt and answers its outcome."""
        job = self._start(payload, worker_id)
        if job is None:
            metrics.JOB_ATTEMPTS.labels("skipped").inc()
            return "skipped"
        started = time.monotonic()
        pid = os.getpid()
        log.info("job.attempt_started", job_id=job.id, attempt=payload.attempt, pid=pid, worker_id=worker_id)
        liveness = _Liveness(job.id, payload.attempt)
        outcome = "interrupted"
        try:
            with self._heartbeat(liveness, payload.request_id):
                outcome = self._attempt(job, payload, liveness)
        finally:
            # Logged whatever ends the attempt, an exception included (the jobs service down
            # while the attempt reports its end): the job's heartbeat then stops, and the
            # jobs service's reaper takes it back after JOB_LEASE_SECONDS.
            seconds = round(time.monotonic() - started, 3)
            log.info(
                "job.attempt_finished",
                job_id=job.id,
                attempt=payload.attempt,
                pid=pid,
                outcome=outcome,
                seconds=seconds,
            )
        if outcome in ("completed", "failed"):
            metrics.JOB_PROCESSING_TIME.observe(time.monotonic() - started)
        if outcome in ("completed", "failed", "cancelled"):
            metrics.JOB_COMPLETION.labels(outcome).inc()
        metrics.JOB_ATTEMPTS.labels(outcome).inc()
        return outcome

    def _call(self, method: str, request: Any, request_id: str | None) -> Any:
        metadata = self._credentials + ((("x-request-id", request_id),) if request_id else ())
        return getattr(self._jobs, method)(request, timeout=self._timeout, metadata=metadata)

    def _start(self, payload: GenerateVideo, worker_id: str) -> jobs_pb2.Job | None:
        request = lifecycle_pb2.StartJobRequest(id=payload.job_id, worker_id=worker_id, attempt=payload.attempt)
        try:
            job: jobs_pb2.Job = self._call("StartJob", request, payload.request_id)
        except grpc.RpcError as exc:
            if exc.code() in _SKIP:
                log.info("job.skipped", job_id=payload.job_id, attempt=payload.attempt, reason=exc.details())
                return None
            raise JobsUnavailable(f"StartJob: {exc.code().name}") from exc
        return job

    def _attempt(self, job: jobs_pb2.Job, payload: GenerateVideo, liveness: _Liveness) -> str:
        # Each attempt its own file: a worker that lost its job to another attempt never
        # overwrites or deletes the video of the attempt that replaced it.
        key = f"{job.id}.mp4" if payload.attempt == 0 else f"{job.id}-{payload.attempt}.mp4"
        partial = self._storage.partial_path(key)
        metadata = json.loads(job.metadata_json or "{}")
        self._cancel_previous(job, payload)
        try:
            choice, video, elapsed_ms = self._generate(job, metadata, partial, payload.request_id, liveness)
            # Storing may take a while (an upload): watchers see the stage; a refusal is a cancel.
            liveness.update(99, "storing")
            if not self._send(liveness, payload.request_id):
                raise JobCancelled(job.id)
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
                codec=video.codec,
            )
            request = lifecycle_pb2.CompleteJobRequest(
                id=job.id,
                result=result,
                used_provider=choice.provider,
                used_model=choice.model or video.model,
                generation_time_ms=elapsed_ms,
                attempt=payload.attempt,
                cost_usd=choice.cost_usd,
            )
            return self._complete(request, key, payload.request_id)
        except JobCancelled:
            log.info("job.stopped_cancelled", job_id=job.id)
            return "cancelled"
        except (InvalidOptions, Unroutable) as exc:
            return self._fail(job, payload, str(exc), provider=getattr(exc, "provider", ""))
        except AttemptFailed as exc:
            if not exc.final:
                log.warning("job.attempt_failed", job_id=job.id, error=str(exc))
                return self._retry_or_fail(job, payload, _describe(exc), provider=exc.provider)
            return self._fail(job, payload, str(exc), provider=exc.provider)
        except (SoftTimeLimitExceeded, Exception) as exc:
            log.warning("job.attempt_failed", job_id=job.id, error=repr(exc))
            return self._retry_or_fail(job, payload, _describe(exc), provider=getattr(exc, "provider", ""))
        finally:
            partial.unlink(missing_ok=True)

    def _generate(
        self, job: jobs_pb2.Job, metadata: dict[str, Any], partial: Path, request_id: str | None, liveness: _Liveness
    ) -> tuple[Choice, RenderedVideo, int]:
        """Generates with the provider routing picks, failing over to the next one on a provider
        error; a provider the client named gets no substitute, and a final error (a safety
        refusal) none either."""
        options = _options_of(metadata)
        requested, model, video_request = options.provider, options.model or "", options.request
        tried: list[str] = []
        failure: AttemptFailed | None = None
        while True:
            try:
                choice = self._router.select(
                    job.id, requested=requested, model=model, exclude=tried, video=video_request
                )
            except RoutingUnavailable:
                # No provider is left to fail over to: the attempt fails with the last provider's error.
                if failure is not None:
                    raise failure from None
                raise
            provider = self._providers.get(choice.provider)
            if provider is None:
                raise Unroutable(f"provider {choice.provider!r} is not configured on this worker", choice.provider)
            spec = provider.spec(job.prompt, options, model=choice.model)
            began = time.monotonic()
            try:
                with self._slot(choice.provider, liveness, request_id):
                    video = provider.generate(
                        spec,
                        output=partial,
                        progress=self._reporter(liveness, request_id),
                        on_task=self._task_recorder(liveness, choice.provider, request_id),
                    )
            except ProviderError as exc:
                self._router.report(choice.provider, error=exc, latency_ms=(time.monotonic() - began) * 1000)
                tried.append(choice.provider)
                log.warning("job.provider_failed", job_id=job.id, provider=choice.provider, error=str(exc))
                failure = AttemptFailed(str(exc), choice.provider, final=exc.final)
                if requested or exc.final:
                    raise failure from exc
                continue
            elapsed_ms = int((time.monotonic() - began) * 1000)
            self._router.report(choice.provider, error=None, latency_ms=elapsed_ms)
            return choice, video, elapsed_ms

    @contextmanager
    def _slot(self, provider: str, liveness: _Liveness, request_id: str | None) -> Iterator[None]:
        """Holds one of the provider's slots while the attempt runs there, waiting for one (and
        saying so) while its cap is reached by other jobs."""
        limit = self._concurrency.get(provider)
        if limit is None or self._slots is None:
            yield
            return
        holder = f"{liveness.job_id}:{liveness.attempt}"
        waited = False
        while not self._slots.try_acquire(provider, holder, limit=limit):
            if not waited:
                log.info("job.waiting_for_provider_slot", job_id=liveness.job_id, provider=provider, limit=limit)
                waited = True
            liveness.update(0, f"waiting for {provider}")
            if not self._send(liveness, request_id):
                raise JobCancelled(liveness.job_id)
            time.sleep(1.0)
        liveness.slot = (self._slots, provider, holder)
        try:
            yield
        finally:
            liveness.slot = None
            self._slots.release(provider, holder)

    def _task_recorder(self, liveness: _Liveness, provider: str, request_id: str | None) -> TaskCallback:
        """Records the provider's task on the job (RecordProviderTask), so that a later attempt
        can cancel it; a refusal means the job is no longer ours (the next progress stops it)."""

        def record(task_id: str) -> None:
            log.info("job.provider_task_started", job_id=liveness.job_id, provider=provider, task_id=task_id)
            request = lifecycle_pb2.RecordProviderTaskRequest(
                id=liveness.job_id, attempt=liveness.attempt, provider=provider, task_id=task_id[:255]
            )
            try:
                self._call("RecordProviderTask", request, request_id)
            except grpc.RpcError as exc:
                if exc.code() in _SKIP:
                    liveness.stopped = True
                else:
                    log.warning("job.provider_task_unrecorded", job_id=liveness.job_id, error=exc.code().name)

        return record

    def _cancel_previous(self, job: jobs_pb2.Job, payload: GenerateVideo) -> None:
        """Cancels the provider task an earlier attempt of the job started and left (its worker
        died or lost the job): nobody pays for a video no one will take."""
        if not job.HasField("provider_task") or job.provider_task.attempt >= payload.attempt:
            return
        task = job.provider_task
        provider = self._providers.get(task.provider)
        if provider is None:
            return
        try:
            provider.cancel(task.task_id, timeout=self._timeout)
            log.info("job.previous_task_cancelled", job_id=job.id, provider=task.provider, task_id=task.task_id)
        except Exception as exc:
            log.warning("job.previous_task_not_cancelled", job_id=job.id, provider=task.provider, error=str(exc))

    def _complete(self, request: lifecycle_pb2.CompleteJobRequest, key: str, request_id: str | None) -> str:
        try:
            self._call("CompleteJob", request, request_id)
        except grpc.RpcError as exc:
            if exc.code() not in _SKIP:
                raise
            # Cancelled while the video was being stored: it must never show as completed.
            self._storage.delete(key)
            return "cancelled"
        return "completed"

    def _fail(self, job: jobs_pb2.Job, payload: GenerateVideo, error: str, *, provider: str) -> str:
        request = lifecycle_pb2.FailJobRequest(id=job.id, error_message=error, attempt=payload.attempt)
        if provider:
            request.used_provider = provider[:64]
        try:
            self._call("FailJob", request, payload.request_id)
        except grpc.RpcError as exc:
            if exc.code() not in _SKIP:
                raise
            return "cancelled"
        return "failed"

    def _retry_or_fail(self, job: jobs_pb2.Job, payload: GenerateVideo, error: str, *, provider: str) -> str:
        if job.retry_count >= job.max_retries:
            return self._fail(job, payload, error, provider=provider)
        delay = self._policy.delay(job.retry_count)
        request = lifecycle_pb2.RetryJobRequest(
            id=job.id, error_message=error, retry_after_seconds=delay, attempt=payload.attempt
        )
        try:
            self._call("RetryJob", request, payload.request_id)
        except grpc.RpcError as exc:
            if exc.code() not in _SKIP:
                raise
            return "cancelled"
        log.info("job.retry_scheduled", job_id=job.id, retry_count=job.retry_count + 1, delay_seconds=round(delay, 3))
        return "retried"

    def _reporter(self, liveness: _Liveness, request_id: str | None) -> ProgressCallback:
        """Reports progress at most every progress_interval; a refusal means the job was cancelled
        (or handed to another attempt), and so does one the heartbeat got."""

        def report(fraction: float, stage: str) -> None:
            if liveness.stopped:
                raise JobCancelled(liveness.job_id)
            liveness.update(min(99, int(fraction * 100)), stage)
            if liveness.since_sent() < self._progress_interval and fraction < 1:
                return
            if not self._send(liveness, request_id):
                raise JobCancelled(liveness.job_id)

        return report

    def _send(self, liveness: _Liveness, request_id: str | None) -> bool:
        """One ReportProgress of the attempt (its heartbeat too); False once the job is not ours."""
        percent, stage = liveness.mark_sent()
        if liveness.slot is not None:
            slots, provider, holder = liveness.slot
            slots.refresh(provider, holder)
        request = lifecycle_pb2.ReportProgressRequest(
            id=liveness.job_id, percent=percent, stage=stage, attempt=liveness.attempt
        )
        try:
            self._call("ReportProgress", request, request_id)
        except grpc.RpcError as exc:
            if exc.code() in _SKIP:
                liveness.stopped = True
                log.info("job.no_longer_ours", job_id=liveness.job_id, attempt=liveness.attempt, reason=exc.details())
                return False
            log.warning("job.progress_unreported", job_id=liveness.job_id, error=exc.code().name)
        return True

    @contextmanager
    def _heartbeat(self, liveness: _Liveness, request_id: str | None) -> Iterator[None]:
        """Beats while the attempt runs, so that a provider that reports no progress for a long
        time (a remote render) never looks like a dead worker to the jobs service's reaper."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self._heartbeat_interval / 2):
                if liveness.since_sent() >= self._heartbeat_interval and not liveness.stopped:
                    self._send(liveness, request_id)

        thread = threading.Thread(target=beat, name=f"heartbeat-{liveness.job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=self._timeout + 1)


class _Liveness:
    """What the attempt last reported, shared by the provider's progress calls and the heartbeat."""

    def __init__(self, job_id: str, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.stopped = False
        # The provider slot the attempt holds (refreshed with each report), if any.
        self.slot: tuple[ProviderSlots, str, str] | None = None
        self._lock = threading.Lock()
        self._percent, self._stage = 0, "starting"
        self._sent = time.monotonic()

    def update(self, percent: int, stage: str) -> None:
        with self._lock:
            self._percent, self._stage = percent, stage

    def since_sent(self) -> float:
        with self._lock:
            return time.monotonic() - self._sent

    def mark_sent(self) -> tuple[int, str]:
        with self._lock:
            self._sent = time.monotonic()
            return self._percent, self._stage


def _options_of(metadata: dict[str, Any]) -> JobOptions:
    """The job's options; the jobs service refused wrong ones at create, so one here fails the job."""
    try:
        return JobOptions.parse(metadata)
    except InvalidArgument as exc:
        raise InvalidOptions(str(exc)) from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SoftTimeLimitExceeded):
        return "the attempt exceeded its time limit"
    text = str(exc).strip() or type(exc).__name__
    return text[:4000]
