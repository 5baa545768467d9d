"""POSTs due webhook deliveries: signed, a bounded number at once, retried with backoff until dead.

Deliveries live in PostgreSQL (services/jobs/webhooks/deliveries.py), never only in memory. Each round
claims due rows with FOR UPDATE SKIP LOCKED and a lease, so replicas share the work and a
delivery whose sender died mid-attempt is attempted again once the lease ends: at least once,
with the same webhook-id and the same body every time. The loop runs beside the RPCs: a slow or
failing receiver never holds up a job's transition, and holds at most WEBHOOK_MAX_PER_HOST of the
WEBHOOK_CONCURRENCY slots, fewer once its circuit opens (services/jobs/webhooks/hosts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db, webhooks
from services.core.egress import Egress
from services.core.logging import get_logger
from services.jobs.webhooks import deliveries
from services.jobs.webhooks.deliveries import Claimed
from services.jobs.webhooks.hosts import Admission, GateRules, HostGate
from services.jobs.webhooks.outbox import WebhookOutbox
from services.jobs.webhooks.post import Attempt, WebhookPoster

log = get_logger(__name__)
DELIVERIES = Counter(
    "webhook_deliveries_total",
    "Webhook delivery attempts by outcome: delivered (2xx), retried (failed, another attempt is "
    "scheduled) or dead (failed after the retry window).",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "webhook_delivery_seconds",
    "Time of one webhook POST, answered or not.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
for _outcome in ("delivered", "retried", "dead"):
    DELIVERIES.labels(_outcome)  # exported at 0 from the start: the first death is an increase
UNFINISHED = Gauge(
    "webhook_deliveries_undelivered",
    "Webhook deliveries by state (pending, delivering, dead), as the sender last counted them.",
    ["state"],
)
_COUNTED_STATES = ("pending", "delivering", "dead")
CIRCUITS_OPEN = Gauge(
    "webhook_circuits_open",
    "Webhook receivers (origins) whose circuit is open or half-open in this process: no attempt "
    "goes to them but a probe after WEBHOOK_CIRCUIT_COOLDOWN_SECONDS.",
)
DEFERRED = Counter(
    "webhook_deliveries_deferred_total",
    "Claimed webhook deliveries put back without an attempt (not counted as one), by reason: "
    "host_busy (WEBHOOK_MAX_PER_HOST in flight to its origin) or circuit_open.",
    ["reason"],
)
for _reason in (Admission.BUSY, Admission.OPEN):
    DEFERRED.labels(_reason.value)
# The lastError of a delivery that died without an attempt: its window ended while its circuit was open.
CIRCUIT_OPEN = "circuit open"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How deliveries are signed, timed, retried and spread (the WEBHOOK_* settings)."""

    # The signing keys, current first (services.core.webhooks.signing_keys).
    keys: tuple[bytes, ...] = field(repr=False)
    timeout: float = 10.0
    retry_base: float = 30.0
    retry_max: float = 3600.0
    retry_for_hours: float = 24.0
    concurrency: int = 16
    poll_interval: float = 1.0
    gauge_interval: float = 15.0
    # Attempts in flight per origin, and the circuit breaker (WEBHOOK_MAX_PER_HOST, WEBHOOK_CIRCUIT_*).
    hosts: GateRules = field(default_factory=GateRules)

    @property
    def lease(self) -> float:
        """How long a claimed delivery is held: an attempt (bounded by timeout) and a margin for
        recording its outcome; past it, another round attempts the delivery again."""
        return self.timeout * 2 + 2.0


def backoff(attempts: int, policy: DeliveryPolicy, rng: random.Random) -> float:
    """Seconds before the next attempt after attempts failed ones: base doubling up to max, with
    jitter between half and all of it (so that receivers coming back are not hit all at once)."""
    delay = min(policy.retry_max, policy.retry_base * 2.0 ** min(attempts - 1, 40))
    return delay / 2 + rng.random() * delay / 2


class WebhookSender:
    """One claim round at a time, or forever with run()."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox: WebhookOutbox,
        policy: DeliveryPolicy,
        egress: Egress,
    ) -> None:
        self._sessions = sessions
        self._outbox = outbox
        self._policy = policy
        self._rng = random.Random()
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._counted_at = 0.0
        self._poster = WebhookPoster(egress, timeout=policy.timeout, max_connections=policy.concurrency)
        self._gate = HostGate(policy.hosts)

    async def run(self) -> None:
        """Claims due deliveries into free slots until stop(); a database outage only delays them."""
        try:
            while not self._stopping.is_set():
                self._outbox.added.clear()
                free = self._policy.concurrency - len(self._in_flight)
                claimed = await self._claim(free) if free > 0 else []
                await self._admit(claimed)
                await self._count()
                if claimed and len(claimed) == free:
                    continue  # more may be due
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._policy.poll_interval):
                        await self._outbox.added.wait()
        finally:
            for task in self._in_flight:
                task.cancel()
            await asyncio.gather(*self._in_flight, return_exceptions=True)
            await self._poster.aclose()

    def stop(self) -> None:
        """Ends run() after the round in progress; attempts in flight are cut (their lease ends
        and another round attempts them again)."""
        self._stopping.set()
        self._outbox.added.set()

    async def _admit(self, claimed: list[Claimed]) -> None:
        """Starts the claimed deliveries the gate lets through; puts the others back."""
        refused = []
        for delivery in claimed:
            admission = self._gate.admit(delivery.origin)
            if admission.runs:
                self._start(delivery, admission)
            else:
                refused.append((delivery, admission))
        CIRCUITS_OPEN.set(self._gate.open_circuits())
        if refused:
            await self._put_back(refused)

    async def _put_back(self, refused: list[tuple[Claimed, Admission]]) -> None:
        """Back to pending, not counted as an attempt; dead at once when the window is over and the
        circuit open (dead letters come with the window, not with the next probe). Unrecorded, the
        lease brings them back."""
        try:
            async with self._sessions.begin() as session:
                for delivery, admission in refused:
                    if admission is Admission.OPEN and delivery.last_chance:
                        await deliveries.mark_short_circuited(session, delivery, error=CIRCUIT_OPEN)
                    else:
                        await deliveries.put_back(session, delivery)
        except Exception as exc:
            log.warning("webhook.put_back_failed", count=len(refused), error=repr(exc))
            return
        for delivery, admission in refused:
            DEFERRED.labels(admission.value).inc()
            if admission is Admission.OPEN and delivery.last_chance:
                DELIVERIES.labels("dead").inc()
                log.warning("webhook.dead", error=CIRCUIT_OPEN, **_fields(delivery))

    def _start(self, delivery: Claimed, admission: Admission = Admission.GO) -> None:
        task = asyncio.create_task(self.deliver(delivery, admission), name=f"webhook-{delivery.id}")
        self._in_flight.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._in_flight.discard(done)
            self._outbox.added.set()  # a slot is free

        task.add_done_callback(finished)

    async def _claim(self, limit: int) -> list[Claimed]:
        retry_for = self._policy.retry_for_hours * 3600
        try:
            async with self._sessions.begin() as session:
                return await deliveries.claim_due(
                    session,
                    limit=limit,
                    lease=self._policy.lease,
                    retry_for=retry_for,
                    blocked=self._gate.blocked(),
                    open_circuits=self._gate.open_origins(),
                )
        except Exception as exc:
            if not db.is_unavailable(exc):
                log.exception("webhook.claim_failed")
            return []

    async def deliver(self, delivery: Claimed, admission: Admission = Admission.GO) -> None:
        """One attempt: POST, then record delivered, or pending again after a backoff, or dead. The
        attempt holds one of its origin's slots (admission) until the POST ends."""
        body = webhooks.envelope(delivery.event_type, delivery.created_at, delivery.payload)
        headers = webhooks.request_headers(
            self._policy.keys, event_id=delivery.event_id, timestamp=int(time.time()), body=body
        )
        started = time.perf_counter()
        delivered: bool | None = None
        try:
            attempt = await self._poster.post(delivery.url, body=body, headers=headers)
            delivered = attempt.error is None
        finally:
            self._gate.finished(delivery.origin, admission, delivered=delivered)
        DELIVERY_SECONDS.observe(time.perf_counter() - started)
        try:
            await self._record(delivery, attempt)
        except Exception as exc:
            # The lease runs out and the delivery is attempted again: at least once.
            log.warning("webhook.outcome_not_recorded", delivery_id=delivery.id, error=repr(exc))

    async def _record(self, delivery: Claimed, attempt: Attempt) -> None:
        fields = {**_fields(delivery), "status_code": attempt.status}
        if attempt.error is None:
            assert attempt.status is not None
            async with self._sessions.begin() as session:
                held = await deliveries.mark_delivered(session, delivery, status_code=attempt.status)
            DELIVERIES.labels("delivered").inc()
            log.info("webhook.delivered", held=held, **fields)
            return
        retry_in = None if delivery.last_chance else backoff(delivery.attempts, self._policy, self._rng)
        async with self._sessions.begin() as session:
            held = await deliveries.mark_failed(
                session, delivery, status_code=attempt.status, error=attempt.error, retry_in=retry_in
            )
        outcome = "dead" if retry_in is None else "retried"
        DELIVERIES.labels(outcome).inc()
        log.warning(f"webhook.{outcome}", error=attempt.error, retry_in=retry_in, held=held, **fields)

    async def _count(self) -> None:
        """Refreshes the gauge of unfinished deliveries, at most every gauge_interval seconds."""
        now = time.monotonic()
        if now - self._counted_at < self._policy.gauge_interval:
            return
        self._counted_at = now
        try:
            async with self._sessions() as session:
                counts = await deliveries.count_unfinished(session)
        except Exception as exc:
            log.warning("webhook.count_failed", error=repr(exc))
            return
        for state in _COUNTED_STATES:
            UNFINISHED.labels(state).set(counts.get(state, 0))


def _fields(delivery: Claimed) -> dict[str, object]:
    """The log fields of a delivery (its host, never its URL: a URL may carry a token)."""
    return {
        "delivery_id": delivery.id,
        "job_id": delivery.job_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "host": urlsplit(delivery.url).hostname,
        "attempt": delivery.attempts,
    }
