"""Two jobs services on one database and one Redis, whose background loops a test can drive.

Each replica is a real `start_jobs_server` with its broker and Redis; only the objects its
loops run are built through recording factories, so that a test can run their rounds at
chosen moments and see which replica did what. The loops' own timers are set long: after the
first round at start they wait for the test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

import services.jobs.dispatch as dispatch_wiring
import services.jobs.retention as retention_module
import services.jobs.webhooks as webhooks_wiring
from services.core.queues import QUEUES
from services.core.storage.base import MediaStorage
from services.jobs.dispatch.dispatcher import BrokerWatch, Dispatcher
from services.jobs.retention import Retention, RetentionPolicy
from services.jobs.server import JobsServer
from services.jobs.webhooks.deliveries import Claimed
from services.jobs.webhooks.hosts import Admission
from services.jobs.webhooks.outbox import WebhookOutbox
from services.jobs.webhooks.sender import WebhookSender
from tests.conftest import jobs_settings, start_brokered_jobs, wait_serving
from tests.support.brokers import drop_keys
from tests.support.deliveries import QUICK
from tests.support.internal import JobsClients, jobs_clients

# What the replicas run with: rounds only when a test asks (after the one at start), small
# batches so that each round leaves work for the other replica, nothing promoted by age.
REPLICA_SETTINGS: dict[str, Any] = {
    **QUICK,
    "dispatch_interval": 60.0,
    "dispatch_batch": 4,
    "priority_aging_seconds": 3600.0,
    "job_lease_seconds": 30.0,
    "media_retention_days": 7.0,
    "media_retention_interval": 3600.0,
    "media_retention_batch": 3,
    "webhook_concurrency": 3,
    "webhook_poll_interval": 60.0,
}


class Clock:
    """The dispatchers' monotonic clock (the reaper's lease grace), moved by the test."""

    def __init__(self) -> None:
        self.time = 0.0

    def now(self) -> float:
        """The current fake time."""
        return self.time

    def advance(self, seconds: float) -> None:
        """Moves time on."""
        self.time += seconds


class DepthGate:
    """When armed, holds each replica after it read the queue depths until both have: both
    decide on the same depths, the interleaving in which a double publish would show."""

    def __init__(self) -> None:
        self.barrier: asyncio.Barrier | None = None

    def arm(self, parties: int) -> None:
        """The next reads of parties replicas meet."""
        self.barrier = asyncio.Barrier(parties)

    def disarm(self) -> None:
        """Reads go on alone."""
        self.barrier = None


class GatedWatch:
    """A replica's broker watch whose depth reads meet at the gate."""

    def __init__(self, inner: BrokerWatch, gate: DepthGate) -> None:
        self._inner = inner
        self._gate = gate

    async def queue_depths(self) -> dict[str, int]:
        """The depths, once every armed replica read them."""
        depths = await self._inner.queue_depths()
        if self._gate.barrier is not None:
            await self._gate.barrier.wait()
        return depths

    async def lost_its_data(self) -> bool:
        """As the real watch."""
        return await self._inner.lost_its_data()

    async def forget_epoch(self) -> None:
        """As the real watch."""
        await self._inner.forget_epoch()


class ObservedDispatcher(Dispatcher):
    """A replica's dispatcher that remembers the jobs its reaper took back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reaped: list[str] = []
        self.first_round = asyncio.Event()

    async def dispatch_once(self) -> int:
        """A round; the first (the loop's at start) is signalled."""
        try:
            return await super().dispatch_once()
        finally:
            self.first_round.set()

    async def reap(self, *, decided_at: float | None = None) -> list[tuple[str, str, int]]:
        """The reaper's round, remembered."""
        rows = await super().reap(decided_at=decided_at)
        self.reaped.extend(job_id for job_id, _, _ in rows)
        return rows


class ObservedSender(WebhookSender):
    """A replica's webhook sender that remembers the deliveries it attempted."""

    def __init__(self, sessions: Any, outbox: WebhookOutbox, *args: Any, **kwargs: Any) -> None:
        super().__init__(sessions, outbox, *args, **kwargs)
        self.outbox = outbox
        self.attempted: list[str] = []

    async def deliver(self, delivery: Claimed, admission: Admission = Admission.GO) -> None:
        """One attempt, remembered."""
        self.attempted.append(delivery.id)
        await super().deliver(delivery, admission)

    def wake(self) -> None:
        """Makes its loop claim due deliveries now, as a delivery recorded in this process does."""
        self.outbox.added.set()


class CountingDeletes:
    """A replica's media storage that remembers what it was asked to delete."""

    def __init__(self, inner: MediaStorage, deletes: list[str]) -> None:
        self._inner = inner
        self.deletes = deletes

    def delete(self, key: str) -> bool:
        """Deletes key, remembered."""
        self.deletes.append(key)
        return self._inner.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class Built:
    """What the recording factories built, in the order the replicas started."""

    clock: Clock = field(default_factory=Clock)
    gate: DepthGate = field(default_factory=DepthGate)
    dispatchers: list[ObservedDispatcher] = field(default_factory=list)
    senders: list[ObservedSender] = field(default_factory=list)
    sweepers: list[Retention] = field(default_factory=list)
    # Every storage key a retention sweep asked its storage to delete, any replica.
    deletes: list[str] = field(default_factory=list)


def record_builds(monkeypatch: pytest.MonkeyPatch) -> Built:
    """Makes the jobs services started from now build observed loops (and records them)."""
    built = Built()

    def dispatcher(*args: Any, broker: BrokerWatch | None = None, **kwargs: Any) -> Dispatcher:
        watch = None if broker is None else GatedWatch(broker, built.gate)
        built.dispatchers.append(ObservedDispatcher(*args, broker=watch, clock=built.clock.now, **kwargs))
        return built.dispatchers[-1]

    def sender(*args: Any, **kwargs: Any) -> WebhookSender:
        built.senders.append(ObservedSender(*args, **kwargs))
        return built.senders[-1]

    def sweeper(sessions: Any, storage: MediaStorage, policy: RetentionPolicy) -> Retention:
        counting: Any = CountingDeletes(storage, built.deletes)
        built.sweepers.append(Retention(sessions, counting, policy))
        return built.sweepers[-1]

    monkeypatch.setattr(dispatch_wiring, "Dispatcher", dispatcher)
    monkeypatch.setattr(webhooks_wiring, "WebhookSender", sender)
    monkeypatch.setattr(retention_module, "Retention", sweeper)
    return built


@dataclass
class Replica:
    """One running jobs service, its clients and the loops it runs."""

    clients: JobsClients
    server: JobsServer
    dispatcher: ObservedDispatcher
    sender: ObservedSender
    retention: Retention


@dataclass
class Replicas:
    """Jobs services side by side on one database and one Redis (one Celery key prefix)."""

    members: list[Replica]
    built: Built
    broker: Broker
    database_url: str

    async def dispatch_rounds(self) -> list[int]:
        """One dispatcher round on every replica at once; what each published."""
        return list(await asyncio.gather(*(r.dispatcher.dispatch_once() for r in self.members)))

    async def sweep_rounds(self) -> list[int]:
        """One retention sweep on every replica at once; what each deleted."""
        return list(await asyncio.gather(*(r.retention.sweep_once() for r in self.members)))


class Broker:
    """The Celery messages on the replicas' queues, read from Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = prefix

    def messages(self, queues: tuple[str, ...] = QUEUES) -> list[tuple[str, int]]:
        """(job id, attempt) of every generation message waiting on queues."""
        found = []
        for queue in queues:
            for raw in self.client.lrange(f"{self.prefix}{queue}", 0, -1):
                kwargs = json.loads(base64.b64decode(json.loads(raw)["body"]))[1]
                if "attempt" in kwargs:
                    found.append((kwargs["job_id"], kwargs["attempt"]))
        return found

    def per_job(self, queues: tuple[str, ...] = QUEUES) -> Counter[str]:
        """How many messages on queues name each job."""
        return Counter(job_id for job_id, _ in self.messages(queues))

    def empty_queues(self) -> None:
        """Drops every waiting message (as a Redis that lost them, or workers that took them)."""
        self.client.delete(*(f"{self.prefix}{queue}" for queue in QUEUES))

    def forget_epoch(self) -> None:
        """Deletes the dispatchers' epoch key: Redis looks new (it lost its data)."""
        self.client.delete(f"{self.prefix}videogen:broker-epoch")


@contextlib.asynccontextmanager
async def started_replicas(
    count: int,
    *,
    database_url: str,
    redis_url: str,
    media_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    **overrides: Any,
) -> AsyncIterator[Replicas]:
    """count jobs services on database_url and redis_url (REPLICA_SETTINGS, overridden by
    keyword), each past its loops' first round."""
    built = record_builds(monkeypatch)
    prefix = f"r{uuid.uuid4().hex[:10]}-"
    values = {**REPLICA_SETTINGS, **overrides, "celery_key_prefix": prefix, "media_dir": media_dir}
    settings = jobs_settings(**values)
    servers: list[JobsServer] = []
    try:
        async with contextlib.AsyncExitStack() as opened:
            members = []
            for index in range(count):
                server = await start_brokered_jobs(settings, database_url=database_url, redis_url=redis_url)
                servers.append(server)
                members.append(await _member(opened, server, built, index))
            await asyncio.gather(*(r.dispatcher.first_round.wait() for r in members))
            yield Replicas(members, built, Broker(redis_url, prefix), database_url)
    finally:
        for server in servers:
            await server.stop(0)
        drop_keys(redis_url, prefix)


async def _member(opened: contextlib.AsyncExitStack, server: JobsServer, built: Built, index: int) -> Replica:
    clients = await opened.enter_async_context(jobs_clients(server.port))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await wait_serving(channel)
    return Replica(clients, server, built.dispatchers[index], built.senders[index], built.sweepers[index])
