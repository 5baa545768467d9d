"""The webhook-blackhole scenario: half the jobs' webhooks go to a receiver that never answers,
the others to one that answers at once. The healthy receiver's deliveries must arrive within
P99_BOUND of their events (p99), and every delivery must end delivered or dead: dead ones after
their retry window (RETRY_WINDOW), not before. Both receivers run in this process, on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tests.chaos.faults import Fault
from tests.chaos.harness import Context, Verdict
from tests.chaos.load import FINAL, Accepted, JobSpec
from tests.support.webhook_receiver import Blackhole, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"chaos webhook secret, 32 bytes..").decode()
# The bound on the healthy receiver's p99 from event to arrival, in seconds.
P99_BOUND = 2.0
# How long a delivery is retried before it is dead (WEBHOOK_RETRY_FOR_HOURS), in seconds.
RETRY_WINDOW = 15.0
# After the jobs are final, how long the deliveries may take to end (the last dead-host ones
# need their window, then a look by the sender).
SETTLE = RETRY_WINDOW + 30.0
# Short timeouts, retries and cooldown so that the dead host's deliveries end within the run;
# loopback receivers allowed.
SETTINGS = {
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    "WEBHOOK_SECRET": SECRET,
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.5",
    "WEBHOOK_RETRY_MAX_SECONDS": "2",
    "WEBHOOK_RETRY_FOR_HOURS": f"{RETRY_WINDOW / 3600:.8f}",
    "WEBHOOK_CIRCUIT_COOLDOWN_SECONDS": "3",
}
_DELIVERIES = """
    SELECT d.job_id, d.event_id, d.event_type, d.url, d.state, d.attempts, d.last_error,
           d.created_at, d.updated_at, j.status AS job_status
    FROM webhook_deliveries d JOIN jobs j ON j.id = d.job_id WHERE d.job_id = ANY($1::text[])
"""


@dataclass(frozen=True)
class Delivery:
    """A delivery's row, read directly from PostgreSQL."""

    job_id: str
    event_id: str
    event_type: str
    url: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    job_status: str


async def read_deliveries(database_url: str, job_ids: list[str]) -> list[Delivery]:
    """Every delivery of these jobs."""
    connection = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await connection.fetch(_DELIVERIES, job_ids, timeout=10)
    finally:
        await connection.close()
    return [Delivery(**dict(row)) for row in rows]


def percentile(values: list[float], fraction: float) -> float:
    """The value at this fraction of the sorted values (nearest rank); 0 when there are none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class WebhookBlackhole:
    """The scenario (a Stage of tests/chaos/harness.py): its receivers, settings and checks."""

    def __init__(self) -> None:
        self.settings = dict(SETTINGS)
        self.healthy: WebhookReceiver | None = None
        self.dead: Blackhole | None = None

    def open(self) -> None:
        """Starts both receivers."""
        self.healthy = WebhookReceiver(SECRET)
        self.healthy._thread.start()
        self.dead = Blackhole()
        self.dead._thread.start()

    def close(self) -> None:
        """Stops both receivers."""
        if self.healthy is not None:
            self.healthy._server.shutdown()
            self.healthy._server.server_close()
        if self.dead is not None:
            self.dead.close()

    def shape(self, specs: list[JobSpec]) -> None:
        """Every job gets a webhook: the odd ones to the blackhole, the even ones to the healthy one."""
        assert self.healthy is not None and self.dead is not None
        for index, spec in enumerate(specs):
            spec.body["webhookUrl"] = self.dead.url if index % 2 else self.healthy.url

    async def __call__(self, context: Context) -> Fault:
        """The fault is the blackhole itself, there from the start: nothing to do."""
        now = time.time()
        assert self.dead is not None
        return Fault(f"a webhook receiver that never answers ({self.dead.url}) for half the jobs", now, now)

    async def verdict(self, context: Context, accepted: list[Accepted]) -> Verdict:
        """Waits until every delivery is delivered or dead (at most SETTLE s), then checks."""
        hooked = [a.job_id for a in accepted if "webhookUrl" in a.spec.body]
        deadline = time.monotonic() + SETTLE
        found = await read_deliveries(context.postgres.url, hooked)
        while any(d.state not in ("delivered", "dead") for d in found) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            found = await read_deliveries(context.postgres.url, hooked)
        return self._judge(accepted, found)

    def _judge(self, accepted: list[Accepted], found: list[Delivery]) -> Verdict:
        assert self.healthy is not None and self.dead is not None
        verdict = Verdict()
        verdict.problems.extend(_missing_events(accepted, found))
        healthy = [d for d in found if d.url == self.healthy.url]
        dead = [d for d in found if d.url == self.dead.url]
        arrivals: dict[str, float] = {}
        for received in self.healthy.accepted:
            arrivals.setdefault(received.event_id, received.at)
        latencies = [arrivals[d.event_id] - d.created_at.timestamp() for d in healthy if d.event_id in arrivals]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        verdict.notes.append(
            f"webhooks, healthy receiver: {len(latencies)} of {len(healthy)} deliveries arrived; event to "
            f"arrival p50 {p50:.3f}s, p99 {p99:.3f}s, max {max(latencies, default=0):.3f}s (bound p99 {P99_BOUND:g}s)"
        )
        if p99 > P99_BOUND:
            verdict.problems.append(f"healthy webhook p99 {p99:.2f}s over {P99_BOUND:g}s")
        if len(latencies) < len(healthy):
            verdict.problems.append(f"{len(healthy) - len(latencies)} healthy webhook deliveries never arrived")
        lived = [d.updated_at.timestamp() - d.created_at.timestamp() for d in dead if d.state == "dead"]
        unfinished = [d for d in dead if d.state != "dead"]
        verdict.notes.append(
            f"webhooks, blackhole: {len(dead)} deliveries, {len(lived)} dead "
            f"({sum(d.last_error == 'circuit open' for d in dead)} without a last attempt: circuit open), "
            f"{sum(d.attempts for d in dead)} attempts in all, {self.dead.connections} connections taken; "
            f"dead after {min(lived, default=0):.1f}..{max(lived, default=0):.1f}s (window {RETRY_WINDOW:g}s)"
        )
        if unfinished:
            verdict.problems.append(f"{len(unfinished)} blackholed webhook deliveries not dead after the window")
        if lived and min(lived) < RETRY_WINDOW:
            verdict.problems.append(f"a blackholed delivery died {min(lived):.1f}s after its event, before its window")
        return verdict


def _missing_events(accepted: list[Accepted], found: list[Delivery]) -> list[str]:
    """Jobs whose final status (or queued) has no delivery: a lost event."""
    events: dict[str, set[str]] = {}
    statuses: dict[str, str] = {}
    for delivery in found:
        events.setdefault(delivery.job_id, set()).add(delivery.event_type)
        statuses[delivery.job_id] = delivery.job_status
    missing = []
    for job in accepted:
        if "webhookUrl" not in job.spec.body:
            continue
        status = statuses.get(job.job_id)
        expected = {"job.queued"} | ({f"job.{status}"} if status in FINAL else set())
        if not expected <= events.get(job.job_id, set()):
            missing.append(job.job_id)
    return [f"{len(missing)} jobs miss a webhook event (queued or final), e.g. {missing[:3]}"] if missing else []


webhook_blackhole = WebhookBlackhole()
