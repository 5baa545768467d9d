"""Fair webhooks: a receiver that never answers cannot delay the others' deliveries, its circuit
opens, and its deliveries still end dead after their retry window."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support.deliveries import SECRET, ServiceFactory, deliveries_of
from tests.support.factories import create_job
from tests.support.webhook_receiver import Blackhole, blackhole, webhook_receiver
from videogen.v1 import jobs_pb2, webhooks_pb2

# Deliveries queued for the dead host before the healthy one's start: enough for every slot.
DEAD_DELIVERIES = 40
HEALTHY_DELIVERIES = 12
# Without caps and breaker, the sender's slots go first come, first served.
UNFAIR = {"webhook_max_per_host": 1000, "webhook_circuit_failures": 0}


async def wait_connections(hole: Blackhole, count: int, timeout: float = 10) -> None:
    """Until the blackhole holds count connections."""
    async with asyncio.timeout(timeout):
        while hole.connections < count:
            await asyncio.sleep(0.02)


async def healthy_latencies(start_service: ServiceFactory, **settings: Any) -> tuple[list[float], int]:
    """The seconds from event to arrival of deliveries to a healthy receiver while a dead host
    has DEAD_DELIVERIES due, and the connections the dead host took meanwhile."""
    service = await start_service(webhook_timeout_seconds=2.0, webhook_concurrency=16, **settings)
    with blackhole() as dead, webhook_receiver(SECRET) as healthy:
        for _ in range(DEAD_DELIVERIES):
            await create_job(service.jobs, webhook_url=dead.url, webhook_events=["job.queued"])
        await wait_connections(dead, 4)  # the dead host holds slots now
        for _ in range(HEALTHY_DELIVERIES):
            await create_job(service.jobs, webhook_url=healthy.url, webhook_events=["job.queued"])
            await asyncio.sleep(0.05)
        accepted = await healthy.wait_accepted(HEALTHY_DELIVERIES, timeout=30)
        return [received.latency for received in accepted], dead.connections


async def test_a_dead_host_delays_no_other_hosts_delivery_by_more_than_a_second(
    start_service: ServiceFactory,
) -> None:
    latencies, dead_connections = await healthy_latencies(start_service)

    assert max(latencies) < 1.0, f"healthy deliveries arrived {sorted(latencies)[-3:]} s after their events"
    assert dead_connections <= 8, "the dead host held at most its cap at a time"


async def test_without_caps_and_breaker_the_dead_host_would_delay_the_others(start_service: ServiceFactory) -> None:
    # The control of the test above: the same load, the mechanism switched off, starves.
    latencies, dead_connections = await healthy_latencies(start_service, **UNFAIR)

    assert max(latencies) > 1.5, "the dead host held every slot for a whole timeout"
    assert dead_connections >= 16


async def test_a_dead_hosts_circuit_opens_after_five_failures_and_its_deliveries_wait_unattempted(
    start_service: ServiceFactory,
) -> None:
    service = await start_service(webhook_timeout_seconds=0.3, webhook_circuit_cooldown_seconds=60)
    with blackhole() as dead:
        created = [
            await create_job(service.jobs, webhook_url=dead.url, webhook_events=["job.queued"]) for _ in range(20)
        ]
        await wait_connections(dead, 5)
        await asyncio.sleep(1.5)  # every attempt admitted before the circuit opened has timed out
        connections = dead.connections
        await asyncio.sleep(1.0)

        assert dead.connections == connections, "no attempt while the circuit is open"
        found = [d for job in created for d in await deliveries_of(service.jobs, job.id)]

    # Five failures open it; at most three more were in flight then (four slots).
    assert 5 <= connections <= 8
    assert sum(d.attempts for d in found) == connections, "a delivery put back is not counted as attempted"
    waiting = [d for d in found if d.attempts == 0]
    assert len(waiting) >= 12 and all(d.state == webhooks_pb2.DELIVERY_STATE_PENDING for d in waiting)


@pytest.mark.parametrize("cooldown", [0.5, 60.0])
async def test_deliveries_to_an_open_circuit_are_dead_once_their_retry_window_is_over(
    start_service: ServiceFactory, cooldown: float
) -> None:
    window = 2.0
    service = await start_service(
        webhook_timeout_seconds=0.3,
        webhook_circuit_cooldown_seconds=cooldown,
        webhook_retry_for_hours=window / 3600,
    )

    async def every(jobs: list[jobs_pb2.Job]) -> list[webhooks_pb2.WebhookDelivery]:
        return [d for job in jobs for d in await deliveries_of(service.jobs, job.id)]

    with blackhole() as dead:
        started = time.monotonic()
        created = [
            await create_job(service.jobs, webhook_url=dead.url, webhook_events=["job.queued"]) for _ in range(10)
        ]

        async with asyncio.timeout(window + 10):
            while not all(d.state == webhooks_pb2.DELIVERY_STATE_DEAD for d in await every(created)):
                await asyncio.sleep(0.1)
        took = time.monotonic() - started
        found = await every(created)

    assert window <= took < window + 5, "dead once the window is over, whatever the cooldown"
    unattempted = [d for d in found if d.attempts == 0]
    assert all(d.last_error == "circuit open" for d in unattempted)
    assert all(d.last_error in {"timeout", "circuit open"} for d in found)
