"""What a running attempt tells the jobs service: its progress, its provider task and slot, its heartbeat."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from services.core.generators.base import JobCancelled, ProgressCallback, TaskCallback
from services.core.logging import get_logger
from services.worker.jobs_client import JobsClient, Refused
from services.worker.slots import ProviderSlots

log = get_logger(__name__)


class Liveness:
    """What the attempt last reported, shared by the provider's progress calls and the heartbeat;
    `stopped` once the jobs service refused one of them (the job is no longer this attempt's)."""

    def __init__(
        self, jobs: JobsClient, *, job_id: str, attempt: int, request_id: str | None, progress_interval: float
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.stopped = False
        self._jobs = jobs
        self._request_id = request_id
        self._progress_interval = progress_interval
        # The provider slot the attempt holds (refreshed with each report), if any.
        self._slot: tuple[ProviderSlots, str, str] | None = None
        self._lock = threading.Lock()
        self._percent, self._stage = 0, "starting"
        self._sent = time.monotonic()

    def update(self, percent: int, stage: str) -> None:
        """Notes the attempt's progress, to be sent with the next report."""
        with self._lock:
            self._percent, self._stage = percent, stage

    def since_sent(self) -> float:
        """Seconds since the last report."""
        with self._lock:
            return time.monotonic() - self._sent

    def send(self) -> bool:
        """One ReportProgress of the attempt (its heartbeat too); False once the job is not ours."""
        with self._lock:
            self._sent = time.monotonic()
            percent, stage = self._percent, self._stage
        if self._slot is not None:
            slots, provider, holder = self._slot
            slots.refresh(provider, holder)
        try:
            self._jobs.report_progress(
                self.job_id, attempt=self.attempt, percent=percent, stage=stage, request_id=self._request_id
            )
        except Refused as exc:
            self.stopped = True
            log.info("job.no_longer_ours", job_id=self.job_id, attempt=self.attempt, reason=exc.details)
            return False
        return True

    def reporter(self) -> ProgressCallback:
        """Reports progress at most every progress_interval; a refusal means the job was cancelled
        (or handed to another attempt), and so does one the heartbeat got."""

        def report(fraction: float, stage: str) -> None:
            if self.stopped:
                raise JobCancelled(self.job_id)
            self.update(min(99, int(fraction * 100)), stage)
            if self.since_sent() < self._progress_interval and fraction < 1:
                return
            if not self.send():
                raise JobCancelled(self.job_id)

        return report

    def task_recorder(self, provider: str) -> TaskCallback:
        """Records the provider's task on the job (RecordProviderTask), so that a later attempt
        can cancel it; a refusal means the job is no longer ours (the next progress stops it)."""

        def record(task_id: str) -> None:
            log.info("job.provider_task_started", job_id=self.job_id, provider=provider, task_id=task_id)
            try:
                self._jobs.record_provider_task(
                    self.job_id, attempt=self.attempt, provider=provider, task_id=task_id, request_id=self._request_id
                )
            except Refused:
                self.stopped = True

        return record

    @contextmanager
    def hold_slot(self, slots: ProviderSlots, provider: str, *, limit: int) -> Iterator[None]:
        """Holds one of the provider's slots while the attempt runs there, waiting for one (and
        saying so) while its cap is reached by other jobs."""
        holder = f"{self.job_id}:{self.attempt}"
        waited = False
        while not slots.try_acquire(provider, holder, limit=limit):
            if not waited:
                log.info("job.waiting_for_provider_slot", job_id=self.job_id, provider=provider, limit=limit)
                waited = True
            self.update(0, f"waiting for {provider}")
            if not self.send():
                raise JobCancelled(self.job_id)
            time.sleep(1.0)
        self._slot = (slots, provider, holder)
        try:
            yield
        finally:
            self._slot = None
            slots.release(provider, holder)

    @contextmanager
    def heartbeat(self, interval: float, *, join_timeout: float) -> Iterator[None]:
        """Beats while the attempt runs, so that a provider that reports no progress for a long
        time (a remote render) never looks like a dead worker to the jobs service's reaper."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(interval / 2):
                if self.since_sent() >= interval and not self.stopped:
                    self.send()

        thread = threading.Thread(target=beat, name=f"heartbeat-{self.job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=join_timeout)
