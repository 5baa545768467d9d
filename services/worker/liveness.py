"""What a running attempt tells the jobs service: its progress, its provider task and slot, its heartbeat."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from services.core.generators.base import JobCancelled, ProgressCallback, TaskCallback
from services.core.logging import get_logger
from services.worker.jobs_client import JobsClient, Refused
from services.worker.slots import ProviderSlots

log = get_logger(__name__)


# While the jobs service does not answer, the latest report is sent again this often, each time
# with this short a deadline: a path that swallows packets holds a call for its whole deadline,
# and the report must land as soon as the path heals, not a WORKER_RPC_TIMEOUT later.
OUTAGE_RETRY_GAP = 0.2
OUTAGE_PROBE_TIMEOUT = 0.5


class Liveness:
    """What the attempt last reported, shared by the provider's progress calls and the heartbeat;
    `stopped` once the jobs service refused one of them (the job is no longer this attempt's),
    `unreachable` while its reports go unanswered (only the latest is kept, to be sent again)."""

    def __init__(
        self, jobs: JobsClient, *, job_id: str, attempt: int, request_id: str | None, progress_interval: float
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.stopped = False
        self.unreachable = False
        # Set once the attempt sends its outcome: no report may follow (it would be refused).
        self.ending = False
        self._jobs = jobs
        self._request_id = request_id
        self._progress_interval = progress_interval
        # The provider slot the attempt holds (refreshed with each report), if any.
        self._slot: tuple[ProviderSlots, str, str] | None = None
        self._lock = threading.Lock()
        # One report in flight at a time, whichever thread sends it: an outage never piles calls up.
        self._sending = threading.Lock()
        # Set when the render has progress to report: wakes the heartbeat thread, which sends it.
        self._wake = threading.Event()
        self._pending = False
        # When set, a report is due then (a stage that is reported only if it lasts).
        self._deferred: float | None = None
        self._percent, self._stage = 0, "starting"
        self._sent = self._asked = time.monotonic()

    def update(self, percent: int, stage: str) -> None:
        """Notes the attempt's progress, to be sent with the next report."""
        with self._lock:
            self._percent, self._stage = percent, stage

    def defer(self, percent: int, stage: str) -> None:
        """Notes a stage that is worth a report only if it lasts: the heartbeat sends it a
        progress_interval from now, unless the attempt's outcome comes first (which carries the
        news: a fast last stage costs no call)."""
        with self._lock:
            self._percent, self._stage = percent, stage
            self._deferred = time.monotonic() + self._progress_interval
        self._wake.set()

    def since_sent(self) -> float:
        """Seconds since the last report was sent (answered or not)."""
        with self._lock:
            return time.monotonic() - self._sent

    def send(self) -> bool:
        """One ReportProgress of the latest progress (its heartbeat too); False once the job is not
        ours. While the jobs service does not answer, its deadline is short and it returns True:
        the report stays the latest, and the heartbeat sends it again."""
        with self._sending:
            if self.ending:
                return True
            with self._lock:
                self._sent = time.monotonic()
                self._pending, self._deferred = False, None
                percent, stage = self._percent, self._stage
            if self._slot is not None:
                slots, provider, holder = self._slot
                slots.refresh(provider, holder)
            try:
                delivered = self._jobs.report_progress(
                    self.job_id,
                    attempt=self.attempt,
                    percent=percent,
                    stage=stage,
                    request_id=self._request_id,
                    timeout=OUTAGE_PROBE_TIMEOUT if self.unreachable else None,
                )
            except Refused as exc:
                self.stopped = True
                log.info("job.no_longer_ours", job_id=self.job_id, attempt=self.attempt, reason=exc.details)
                return False
            self._note_reachable(delivered, percent)
            return True

    def end_reports(self) -> None:
        """Before the attempt's outcome: waits for a report in flight, and sends none after, so
        that no report reaches the jobs service after the outcome (and is refused there)."""
        with self._sending:
            self.ending = True

    def _note_reachable(self, delivered: bool, percent: int) -> None:
        """Logs the start and the end of an outage of the jobs service, as this attempt saw it."""
        if delivered != self.unreachable:
            return
        self.unreachable = not delivered
        if delivered:
            log.info("job.progress_resent", job_id=self.job_id, attempt=self.attempt, percent=percent)
        else:
            log.warning("job.jobs_unreachable", job_id=self.job_id, attempt=self.attempt)

    def reporter(self) -> ProgressCallback:
        """Notes the progress and has the heartbeat thread report it, at most every
        progress_interval; never waits for the jobs service, so that its outage never holds the
        render. A refusal (a cancel, or the job handed to another attempt) stops the render."""

        def report(fraction: float, stage: str) -> None:
            if self.stopped:
                raise JobCancelled(self.job_id)
            self.update(min(99, int(fraction * 100)), stage)
            with self._lock:
                now = time.monotonic()
                # The render's end is no exception: the attempt's outcome follows it and tells it.
                if now - self._asked < self._progress_interval:
                    return
                self._asked, self._pending = now, True
            self._wake.set()

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
        """Sends the attempt's reports while it runs: the render's progress, a beat every interval
        (so that a provider that reports nothing for long, a remote render, never looks like a
        dead worker to the jobs service's reaper), and while the jobs service does not answer, the
        latest report every OUTAGE_RETRY_GAP, so that it lands as soon as the service is back."""
        done = threading.Event()
        # In the task's context: its log fields and its trace go on in the reports it sends.
        task_context = contextvars.copy_context()
        thread = threading.Thread(
            target=task_context.run, args=(self._beat, interval, done), name=f"heartbeat-{self.job_id}", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            done.set()
            self._wake.set()
            thread.join(timeout=join_timeout)

    def _beat(self, interval: float, done: threading.Event) -> None:
        """The heartbeat thread: sends whenever a report is due, until done or the job is not ours."""
        while not done.is_set() and not self.stopped and not self.ending:
            self._wake.wait(self._due_in(interval))
            self._wake.clear()
            if done.is_set():
                return
            if self._due_in(interval) <= 0:
                self.send()

    def _due_in(self, interval: float) -> float:
        """Seconds until the next report is due: the latest again after an unanswered one, what
        the render asked for at once, a beat after interval."""
        since = self.since_sent()
        if self.unreachable:
            return max(0.0, OUTAGE_RETRY_GAP - since)
        if self._pending:
            return 0.0
        due = interval - since
        if (deferred := self._deferred) is not None:
            due = min(due, deferred - time.monotonic())
        return max(0.0, due)
