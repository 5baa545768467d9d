"""Publishes what PostgreSQL says is due: jobs whose message is missing and long waiters.

PostgreSQL is the source of truth and Redis only carries messages. Each round claims rows with
`FOR UPDATE SKIP LOCKED`, so any number of jobs replicas can dispatch side by side:
- a queued job with no message (its publish failed, or a retry's backoff has passed) is
  published on its queue;
- a job that waited longer than the ageing time on `low_priority` is re-published on
  `default`, and on `default` on `high_priority`, so that a stream of high-priority work never
  starves the rest. The message left behind names the same attempt, so whichever copy a worker
  takes first starts the job and the other is skipped;
- when Redis lost its data (a restart without persistence: the epoch key the dispatcher keeps
  there is gone), every queued job is published again at once;
- a queued job whose message is gone otherwise is re-published: its queue's Redis lists are
  empty yet it has waited longer than `orphan_after` since its message went out (a worker died
  holding it, or this process died between claiming and publishing);
- a queued job whose message went out longer than `republish_after` ago is re-published
  whatever its queue holds: a message lost behind a backlog, or a high-priority one (never
  promoted), is not lost for good;
- a processing job whose worker stopped heart-beating for `lease` seconds is reaped: queued
  again for its next attempt while retries are left, else failed. The worker that lost it is
  fenced off by the attempt number, should it still be alive. No job is reaped before this
  dispatcher has held the database for one whole lease, after its start or after an outage
  (rounds failing, or none for half a lease: the process was frozen): workers whose heartbeats
  could not land meanwhile get a lease to be heard again.

Every copy of a message names its attempt, so a duplicate is harmless: the conditional start
lets exactly one copy start the attempt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.logging import get_logger
from services.core.periodic import every
from services.core.queues import QUEUES
from services.core.tasks import CancelProviderTask, GenerateVideo
from services.jobs.dispatch import statements as sql
from services.jobs.dispatch.publisher import JobPublisher
from services.jobs.webhooks.outbox import WebhookOutbox

log = get_logger(__name__)
RECOVERED = Counter(
    "jobs_recovered_total",
    "Jobs the dispatcher took back: reaped from a silent worker (requeued or failed), or re-published "
    "after their message was lost.",
    ["action"],
)


class Claim(NamedTuple):
    """A queued job a round claimed to publish: its queue, attempt and stored trace context."""

    job_id: str
    queue: str
    attempt: int
    traceparent: str | None


class BrokerWatch(Protocol):
    """What the dispatcher learns from Redis."""

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each queue."""
        ...

    async def lost_its_data(self) -> bool:
        """Whether Redis lost its data since the last call (true once per loss)."""
        ...

    async def forget_epoch(self) -> None:
        """Makes the next lost_its_data() true again."""
        ...


@dataclass(frozen=True)
class DispatchPolicy:
    """How often to look, how much at once, and when a waiting job is promoted."""

    interval: float = 1.0
    batch: int = 200
    aging_seconds: float = 300.0
    # A processing job with no heartbeat for this long has lost its worker.
    lease_seconds: float = 60.0
    # A queued job published this long ago, in a queue Redis holds nothing for, lost its message.
    orphan_after_seconds: float = 30.0
    # A queued job published this long ago is published again, whatever its queue holds.
    republish_after_seconds: float = 900.0


class _Stalled(Exception):
    """The reaper's candidates came back too long after the round decided to reap."""

    def __init__(self, candidates: int, seconds: float) -> None:
        super().__init__(f"{candidates} candidates after {seconds:.3f}s")
        self.candidates = candidates
        self.seconds = round(seconds, 3)


class Dispatcher:
    """One round at a time, or forever with run()."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: JobPublisher,
        policy: DispatchPolicy,
        broker: BrokerWatch | None = None,
        *,
        webhooks: WebhookOutbox | None = None,
        on_reaped: Callable[[Collection[str]], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        # Where the reaper's status changes become webhook deliveries (in its transaction), if set.
        self.webhooks = webhooks
        self._publisher = publisher
        self._policy = policy
        self._broker = broker
        self._stopping = asyncio.Event()
        # Since when (monotonic) the rounds have reached the database without a break; None until
        # a round succeeds after a start or an outage. The reaper waits a lease from it.
        self._held_since: float | None = None
        self._last_round: float | None = None
        self._clock = clock
        # Told (after the commit) of the jobs the reaper changed, so that their watchers hear of it.
        self.on_reaped = on_reaped

    async def run(self) -> None:
        """Dispatches every interval until stop(); a database outage only delays it."""
        await every(self._policy.interval, self._stopping, self.dispatch_once, log=log, failed="dispatch.failed")

    def stop(self) -> None:
        """Ends run() after the round in progress."""
        self._stopping.set()

    async def dispatch_once(self) -> int:
        """Reaps jobs of dead workers (once the database has been held for a lease), publishes
        due jobs, promotes long waiters and re-publishes lost messages; how many went out."""
        began = self._clock()
        if self._last_round is not None and began - self._last_round > self._policy.lease_seconds / 2:
            self._held_since = None  # no round for half a lease: this process was frozen or starved
        self._last_round = began
        try:
            sent = await self._dispatch(reaping=self.holds_a_lease(began), decided_at=began)
        except BaseException:
            self._held_since = None
            raise
        if self._held_since is None:
            self._held_since = self._clock()
        return sent

    def holds_a_lease(self, now: float) -> bool:
        """Whether the database has been held for a whole lease by now, so reaping is fair."""
        return self._held_since is not None and now - self._held_since >= self._policy.lease_seconds

    async def _dispatch(self, *, reaping: bool, decided_at: float) -> int:
        if reaping:
            await self.reap(decided_at=decided_at)
        await self._after_broker_loss()
        due = await self._claim(sql.CLAIM_DUE, {"limit": self._policy.batch})
        promoted = await self._claim(sql.PROMOTE, {"limit": self._policy.batch, "age": self._policy.aging_seconds})
        for claim in promoted:
            log.info("job.promoted", job_id=claim.job_id, queue=claim.queue)
        orphans = await self._orphans()
        for claim in orphans:
            RECOVERED.labels("republished_lost_message").inc()
            log.warning("job.message_lost", job_id=claim.job_id, queue=claim.queue, attempt=claim.attempt)
        sent = 0
        for claim in [*due, *promoted, *orphans]:
            payload = GenerateVideo(job_id=claim.job_id, attempt=claim.attempt)
            # The message goes on in the trace of the request that created the job.
            if await self._publisher.publish(payload, queue=claim.queue, trace=claim.traceparent):
                sent += 1
            else:
                await self.release(claim.job_id, claim.attempt)
        return sent

    async def reap(self, *, decided_at: float | None = None) -> list[tuple[str, str, int]]:
        """Takes processing jobs back from workers that stopped heart-beating. When the candidates
        came back later than a quarter lease after the round decided to reap (this process or the
        database stalled in between: a freeze, a failover), nothing is taken and the lease grace
        starts again, since the workers' heartbeats could not land during the stall either."""
        error = f"the worker running the job stopped answering (no heartbeat for {self._policy.lease_seconds:g} s)"
        lease, limit = self._policy.lease_seconds, self._policy.batch
        try:
            async with self._sessions.begin() as session:
                ids = (await session.execute(sql.REAP_CANDIDATES, {"lease": lease, "limit": limit})).scalars().all()
                if ids and decided_at is not None and self._clock() - decided_at > lease / 4:
                    raise _Stalled(len(ids), self._clock() - decided_at)
                rows = (await session.execute(sql.REAP, {"ids": list(ids), "error": error})).all() if ids else []
                if self.webhooks is not None:
                    events = ((row.id, "job.retrying" if row.status == "queued" else "job.failed") for row in rows)
                    await self.webhooks.record_many(session, events)
        except _Stalled as stalled:
            log.warning("dispatch.reap_deferred", candidates=stalled.candidates, stalled_seconds=stalled.seconds)
            self._held_since = None
            return []
        if rows and self.on_reaped is not None:
            await self.on_reaped([row.id for row in rows])
        for row in rows:
            action = "requeued_lost_worker" if row.status == "queued" else "failed_lost_worker"
            RECOVERED.labels(action).inc()
            log.warning("job.reaped", job_id=row.id, status=row.status, retry_count=row.retry_count)
            if row.status == "failed":
                # No attempt follows to cancel what the lost worker left running: ask for it.
                await self.cancel_provider_task(row.id, row.provider_task)
        return [(row.id, row.status, row.retry_count) for row in rows]

    async def check_broker(self, *, timeout: float) -> None:
        """One broker check, bounded; a dependency down only postpones it to the rounds."""
        try:
            async with asyncio.timeout(timeout):
                await self._after_broker_loss()
        except Exception as exc:
            log.warning("dispatch.broker_check_postponed", error=repr(exc))

    async def _after_broker_loss(self) -> None:
        """Marks every queued job unpublished when Redis lost its data, so that this round and
        the next ones publish them all again."""
        if self._broker is None:
            return
        try:
            lost = await self._broker.lost_its_data()
        except Exception as exc:
            log.warning("dispatch.broker_unknown", error=repr(exc))
            return
        if lost:
            try:
                async with self._sessions.begin() as session:
                    count = (await session.execute(sql.UNPUBLISH_ALL)).rowcount  # type: ignore[attr-defined]
            except BaseException:
                # Not done: let a later round see the loss again.
                await self._broker.forget_epoch()
                raise
            if count:
                RECOVERED.labels("republished_lost_message").inc(count)
                log.warning("dispatch.broker_lost_its_data", republishing=count)
            else:
                log.info("dispatch.broker_epoch_started")

    async def _orphans(self) -> list[Claim]:
        """Claims queued jobs whose message may be lost: long-waiting ones of queues whose Redis
        lists are empty, and, whatever the queues hold, those waiting past the republish bound."""
        stale = {"queues": list(QUEUES), "after": self._policy.republish_after_seconds, "limit": self._policy.batch}
        claimed = await self._claim(sql.SWEEP, stale)
        if self._broker is None:
            return claimed
        try:
            depths = await self._broker.queue_depths()
        except Exception as exc:
            log.warning("dispatch.queue_depths_unknown", error=repr(exc))
            return claimed
        empty = sorted(queue for queue, depth in depths.items() if depth == 0)
        if not empty:
            return claimed
        params = {"queues": empty, "after": self._policy.orphan_after_seconds, "limit": self._policy.batch}
        return [*claimed, *await self._claim(sql.SWEEP, params)]

    async def cancel_provider_task(self, job_id: str, task: dict[str, Any] | None) -> None:
        """Asks a worker to cancel the provider task a job left, when it left one."""
        if not task or not task.get("provider") or not task.get("taskId"):
            return
        payload = CancelProviderTask(job_id=job_id, provider=str(task["provider"]), task_id=str(task["taskId"]))
        if await self._publisher.publish_cancel(payload):
            log.info("job.provider_task_cancel_sent", job_id=job_id, provider=payload.provider)

    async def publish_new(self, job_id: str, queue: str, *, request_id: str | None) -> None:
        """Publishes a just-created (claimed) job; on failure leaves it to a later round."""
        payload = GenerateVideo(job_id=job_id, attempt=0, request_id=request_id)
        if not await self._publisher.publish(payload, queue=queue):
            try:
                await self.release(job_id, 0)
            except Exception:
                log.exception("job.release_failed", job_id=job_id)

    async def release(self, job_id: str, attempt: int) -> None:
        """Marks a job's message as not sent, so that a later round publishes it."""
        async with self._sessions.begin() as session:
            await session.execute(sql.RELEASE, {"id": job_id, "attempt": attempt})

    async def _claim(self, statement: object, params: dict[str, object]) -> list[Claim]:
        async with self._sessions.begin() as session:
            rows = (await session.execute(statement, params)).all()  # type: ignore[call-overload]
        return [Claim(row.id, row.queue, row.retry_count, row.traceparent) for row in rows]
