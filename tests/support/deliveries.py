"""Webhook test helpers: the secrets and quick settings of the tests, a started jobs service, and
waiting on its deliveries over gRPC."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.jobs.server import JobsServer
from tests.support.factories import video_result
from videogen.v1 import jobs_pb2, lifecycle_pb2, webhooks_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub

SECRET = "whsec_" + base64.b64encode(b"test webhook secret, 32 bytes..").decode()
PREVIOUS_SECRET = "whsec_" + base64.b64encode(b"the secret before the rotation!!").decode()
# Quick retries, so that a test sees several attempts in well under a second.
QUICK = {
    "webhook_secret": SECRET,
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_max_seconds": 0.2,
    "webhook_poll_interval": 0.1,
    "webhook_timeout_seconds": 2.0,
    # A failing receiver's circuit opens after five failures in a row: probed again soon.
    "webhook_circuit_cooldown_seconds": 0.2,
}


@dataclass
class Service:
    """A jobs service under test and its clients (the worker's too)."""

    jobs: JobServiceAsyncStub
    lifecycle: JobLifecycleServiceAsyncStub
    server: JobsServer


# Starts a jobs service: settings overridden by keyword (over QUICK), `resolver` for webhook hosts.
ServiceFactory = Callable[..., Awaitable[Service]]


async def complete(lifecycle: JobLifecycleServiceAsyncStub, job_id: str) -> jobs_pb2.Job:
    """Moves a queued job through processing to completed, as a worker does."""
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job_id, worker_id="worker-1"))
    done: jobs_pb2.Job = await lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(id=job_id, result=video_result(job_id), used_provider="local", used_model="m")
    )
    return done


async def deliveries_of(jobs: JobServiceAsyncStub, job_id: str) -> list[webhooks_pb2.WebhookDelivery]:
    """A job's deliveries, oldest first."""
    reply = await jobs.ListJobDeliveries(webhooks_pb2.ListJobDeliveriesRequest(job_id=job_id, take=100))
    return list(reply.deliveries)


async def wait_deliveries(
    jobs: JobServiceAsyncStub,
    job_id: str,
    done: Callable[[list[webhooks_pb2.WebhookDelivery]], bool],
    timeout: float = 20,
) -> list[webhooks_pb2.WebhookDelivery]:
    """Waits until done(the job's deliveries) holds; answers them."""
    async with asyncio.timeout(timeout):
        while not done(found := await deliveries_of(jobs, job_id)):
            await asyncio.sleep(0.05)
    return found


def all_delivered(found: list[webhooks_pb2.WebhookDelivery]) -> bool:
    """Whether there are deliveries and every one was delivered."""
    return bool(found) and all(d.state == webhooks_pb2.DELIVERY_STATE_DELIVERED for d in found)
