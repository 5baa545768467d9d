"""The load: jobs created through the edge at a bounded rate, every answer counted.

A create that got a 503, another 5xx, a timeout or no connection is sent again with the same
`Idempotency-Key`, so that a job is accepted exactly when a 201 answered it, once.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

FINAL = frozenset({"completed", "failed", "cancelled"})
TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}
# About 0.75 s of rendering: long enough to be processing when a fault hits.
LONG = {"durationSeconds": 10, "width": 640, "height": 360, "fps": 24}
RETRY_PAUSE = 0.25


@dataclass(frozen=True)
class JobSpec:
    """One job to create: its body and the idempotency key every try of it carries."""

    key: str
    body: dict[str, Any]


def job_mix(count: int, *, label: str, rng: random.Random) -> list[JobSpec]:
    """count jobs: tiny videos and one in twenty long, a mix of priorities, users and maxRetries."""
    specs = []
    for index in range(count):
        metadata: dict[str, Any] = dict(LONG if index % 20 == 10 else TINY)
        priority = rng.choice(["high", "default", "default", "low"])
        if priority != "default":
            metadata["priority"] = priority
        body = {
            "userId": f"chaos-user-{rng.randrange(6)}",
            "prompt": f"chaos {label} job {index}",
            "metadata": metadata,
            "maxRetries": rng.randint(3, 5),
        }
        specs.append(JobSpec(key=f"chaos-{uuid.uuid4().hex}", body=body))
    return specs


@dataclass
class Answers:
    """Every answer the load got from the API, by status; failures to get one, by kind."""

    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def unavailable(self) -> int:
        """503s: fine while a dependency is down."""
        return self.statuses[503]

    @property
    def other_5xx(self) -> int:
        """5xx other than 503: never fine."""
        return sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)


@dataclass(frozen=True)
class Accepted:
    """A job a 201 answered."""

    job_id: str
    spec: JobSpec
    at: float
    tries: int
    replayed: bool


@dataclass
class Api:
    """The REST API through the edge, counting what it answers."""

    client: httpx.AsyncClient
    alive: Callable[[], bool]
    answers: Answers = field(default_factory=Answers)
    accepted: list[Accepted] = field(default_factory=list)
    not_accepted: list[JobSpec] = field(default_factory=list)

    async def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """One request to /api; its status, or the kind of failure, counted."""
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            self.answers.failures["timeout"] += 1
            return None
        except httpx.TransportError as exc:
            self.answers.failures[type(exc).__name__] += 1
            return None
        self.answers.statuses[response.status_code] += 1
        return response

    async def create(self, spec: JobSpec, *, give_up_after: float) -> Accepted | None:
        """POSTs the job until a 201 (same key every time), a 4xx, or give_up_after seconds."""
        deadline = time.monotonic() + give_up_after
        tries = 0
        while time.monotonic() < deadline and self.alive():
            tries += 1
            response = await self.call("POST", "/api/v1/jobs", json=spec.body, headers={"Idempotency-Key": spec.key})
            if response is not None and response.status_code == 201:
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                accepted = Accepted(response.json()["id"], spec, time.time(), tries, replayed)
                self.accepted.append(accepted)
                return accepted
            if response is not None and response.status_code < 500:
                break
            await asyncio.sleep(RETRY_PAUSE)
        self.not_accepted.append(spec)
        return None

    async def status(self, job_id: str) -> str | None:
        """The job's status, or None when the API did not say."""
        response = await self.call("GET", f"/api/v1/jobs/{job_id}")
        if response is None or response.status_code != 200:
            return None
        status: str = response.json()["status"]
        return status

    async def ready(self) -> bool:
        """Whether /health/ready is 200 (not counted among the answers: 503 is its way to say no)."""
        try:
            response = await self.client.get("/health/ready")
        except httpx.HTTPError:
            return False
        return response.status_code == 200


async def create_jobs(api: Api, specs: list[JobSpec], *, rate: float, senders: int, give_up_after: float) -> None:
    """Creates the jobs, the n-th not before n/rate seconds, with a few concurrent senders."""
    started = time.monotonic()
    queue: asyncio.Queue[tuple[int, JobSpec]] = asyncio.Queue()
    for item in enumerate(specs):
        queue.put_nowait(item)

    async def sender() -> None:
        while not queue.empty():
            index, spec = queue.get_nowait()
            await asyncio.sleep(max(0.0, started + index / rate - time.monotonic()))
            await api.create(spec, give_up_after=give_up_after)

    await asyncio.gather(*(sender() for _ in range(senders)))


async def probe(api: Api, *, timeout: float) -> tuple[float | None, float | None, str]:
    """When /health/ready turns 200, when a new high-priority job completes (epoch), and how it ended."""
    deadline = time.monotonic() + timeout
    ready_at = None
    while time.monotonic() < deadline and api.alive():
        if await api.ready():
            ready_at = time.time()
            break
        await asyncio.sleep(0.2)
    if ready_at is None:
        return None, None, "never ready"
    body = {"userId": "chaos-probe", "prompt": "chaos probe", "metadata": {**TINY, "priority": "high"}}
    spec = JobSpec(f"chaos-probe-{uuid.uuid4().hex}", body)
    accepted = await api.create(spec, give_up_after=max(1.0, deadline - time.monotonic()))
    if accepted is None:
        return ready_at, None, "probe not accepted"
    while time.monotonic() < deadline and api.alive():
        status = await api.status(accepted.job_id)
        if status == "completed":
            return ready_at, time.time(), "completed"
        if status in FINAL:
            return ready_at, None, f"probe {status}"
        await asyncio.sleep(0.2)
    return ready_at, None, "probe not completed in time"
