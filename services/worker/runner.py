"""The body of the generation task: start, generate, store, complete, all through JobService."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded

from services.core.errors import InvalidArgument
from services.core.generators.base import InvalidOptions, JobCancelled, RenderedVideo, VideoProvider
from services.core.job.options import JobOptions
from services.core.logging import get_logger
from services.core.storage.base import MediaStorage, StoredVideo
from services.core.tasks import GenerateVideo
from services.worker import metrics
from services.worker.failover import AttemptFailed, ProviderFailover
from services.worker.jobs_client import JobsClient, Refused
from services.worker.liveness import Liveness
from services.worker.routing import Choice, Router, Unroutable
from services.worker.slots import ProviderSlots
from videogen.v1 import jobs_pb2

log = get_logger(__name__)


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
        jobs: JobsClient,
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
        self._storage = storage
        self._providers = providers
        self._policy = policy
        self._progress_interval = progress_interval
        self._timeout = rpc_timeout
        self._heartbeat_interval = heartbeat_interval
        self._router = router
        self._failover = ProviderFailover(
            router=router, providers=providers, concurrency=dict(concurrency or {}), slots=slots
        )

    def flush(self, timeout: float) -> None:
        """Sends what the process still holds for the services (its routing outcomes)."""
        self._router.flush(timeout)

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
        liveness = Liveness(
            self._jobs,
            job_id=job.id,
            attempt=payload.attempt,
            request_id=payload.request_id,
            progress_interval=self._progress_interval,
        )
        outcome = "interrupted"
        try:
            with liveness.heartbeat(self._heartbeat_interval, join_timeout=self._timeout + 1):
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

    def _start(self, payload: GenerateVideo, worker_id: str) -> jobs_pb2.Job | None:
        """The job, now PROCESSING for this attempt; None when the attempt is to be skipped."""
        try:
            return self._jobs.start(
                payload.job_id,
                attempt=payload.attempt,
                worker_id=worker_id,
                request_id=payload.request_id,
                resumes=payload.resumes,
            )
        except Refused as exc:
            log.info("job.skipped", job_id=payload.job_id, attempt=payload.attempt, reason=exc.details)
            return None

    def _attempt(self, job: jobs_pb2.Job, payload: GenerateVideo, liveness: Liveness) -> str:
        # Each attempt its own file: a worker that lost its job to another attempt never
        # overwrites or deletes the video of the attempt that replaced it.
        key = f"{job.id}.mp4" if payload.attempt == 0 else f"{job.id}-{payload.attempt}.mp4"
        partial = self._storage.partial_path(key)
        self._cancel_previous(job, payload)
        self._delete_previous_videos(job.id, payload.attempt)
        try:
            options = _options_of(json.loads(job.metadata_json or "{}"))
            choice, video, elapsed_ms = self._failover.generate(job, options, partial, liveness)
            # Storing may take a while (an upload): watchers see the stage when it lasts; a quick
            # one is told by CompleteJob alone. A cancel meanwhile refuses the completion (below).
            if liveness.stopped:
                raise JobCancelled(job.id)
            liveness.defer(99, "storing")
            stored = self._storage.store(partial, key)
            liveness.end_reports()
            return self._complete(job, payload, choice, video, stored, elapsed_ms=elapsed_ms)
        except JobCancelled:
            log.info("job.stopped_cancelled", job_id=job.id)
            return "cancelled"
        except (InvalidOptions, Unroutable) as exc:
            liveness.end_reports()
            return self._fail(job, payload, str(exc), provider=getattr(exc, "provider", ""))
        except AttemptFailed as exc:
            liveness.end_reports()
            if not exc.final:
                log.warning("job.attempt_failed", job_id=job.id, error=str(exc))
                return self._retry_or_fail(job, payload, _describe(exc), provider=exc.provider)
            return self._fail(job, payload, str(exc), provider=exc.provider)
        except (SoftTimeLimitExceeded, Exception) as exc:
            log.warning("job.attempt_failed", job_id=job.id, error=repr(exc))
            liveness.end_reports()
            return self._retry_or_fail(job, payload, _describe(exc), provider=getattr(exc, "provider", ""))
        finally:
            partial.unlink(missing_ok=True)

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

    def _delete_previous_videos(self, job_id: str, attempt: int) -> None:
        """Deletes what earlier attempts of the job stored and never completed with (a worker
        killed between its store and CompleteJob): this attempt started, so none of them can
        complete any more, and no job result names their files."""
        keys = [f"{job_id}.mp4" if earlier == 0 else f"{job_id}-{earlier}.mp4" for earlier in range(attempt)]
        try:
            deleted = [key for key in keys if self._storage.delete(key)]
        except Exception as exc:  # a store that does not answer: the next attempt tries again
            log.warning("job.previous_videos_not_deleted", job_id=job_id, error=str(exc))
            return
        if deleted:
            log.info("job.previous_videos_deleted", job_id=job_id, keys=deleted)

    def _complete(
        self,
        job: jobs_pb2.Job,
        payload: GenerateVideo,
        choice: Choice,
        video: RenderedVideo,
        stored: StoredVideo,
        *,
        elapsed_ms: int,
    ) -> str:
        """Completes the job with the stored video; refused, the video is deleted (cancelled)."""
        try:
            self._jobs.complete(
                job.id,
                attempt=payload.attempt,
                result=_video_result(video, stored),
                provider=choice.provider,
                model=choice.model or video.model,
                generation_time_ms=elapsed_ms,
                cost_usd=choice.cost_usd,
                request_id=payload.request_id,
            )
        except Refused:
            # Cancelled while the video was being stored: it must never show as completed.
            self._storage.delete(stored.key)
            return "cancelled"
        return "completed"

    def _fail(self, job: jobs_pb2.Job, payload: GenerateVideo, error: str, *, provider: str) -> str:
        try:
            self._jobs.fail(
                job.id, attempt=payload.attempt, error=error, provider=provider, request_id=payload.request_id
            )
        except Refused:
            return "cancelled"
        return "failed"

    def _retry_or_fail(self, job: jobs_pb2.Job, payload: GenerateVideo, error: str, *, provider: str) -> str:
        if job.retry_count >= job.max_retries:
            return self._fail(job, payload, error, provider=provider)
        delay = self._policy.delay(job.retry_count)
        try:
            self._jobs.retry(job.id, attempt=payload.attempt, error=error, delay=delay, request_id=payload.request_id)
        except Refused:
            return "cancelled"
        log.info("job.retry_scheduled", job_id=job.id, retry_count=job.retry_count + 1, delay_seconds=round(delay, 3))
        return "retried"


def _video_result(video: RenderedVideo, stored: StoredVideo) -> jobs_pb2.VideoResult:
    """The job's result: the video as rendered, where and how big it was stored."""
    return jobs_pb2.VideoResult(
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
