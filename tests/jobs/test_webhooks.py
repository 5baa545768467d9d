"""Signed webhooks: durable deliveries in PostgreSQL, retries, dead letters, redelivery, restarts,
checked with the reference verifier of Standard Webhooks."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from prometheus_client import REGISTRY
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.core import webhooks
from services.core.job.public import job_from_proto
from services.jobs.settings import JobsSettings
from services.jobs.webhooks.sender import DeliveryPolicy, backoff
from tests.conftest import jobs_settings, start_brokered_jobs, wait_serving
from tests.support.brokers import drop_keys
from tests.support.deliveries import (
    PREVIOUS_SECRET,
    QUICK,
    SECRET,
    ServiceFactory,
    all_delivered,
    complete,
    deliveries_of,
    wait_deliveries,
)
from tests.support.factories import bare_json, create_job
from tests.support.internal import jobs_clients
from tests.support.processes import ServiceProcess, clean_env
from tests.support.webhook_receiver import webhook_receiver
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, lifecycle_pb2, webhooks_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub


def counter(outcome: str) -> float:
    return REGISTRY.get_sample_value("webhook_deliveries_total", {"outcome": outcome}) or 0.0


async def test_a_receiver_failing_three_times_gets_every_event_once_in_effect(start_service: ServiceFactory) -> None:
    service = await start_service()
    delivered_before = counter("delivered")
    with webhook_receiver(SECRET, fail_first=3) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url)
        done = await complete(service.lifecycle, job.id)

        found = await wait_deliveries(service.jobs, job.id, lambda f: len(f) == 3 and all_delivered(f))

    assert [d.event_type for d in found] == ["job.queued", "job.processing", "job.completed"]
    assert sum(d.attempts for d in found) == 6, "three failed attempts, then one each"
    accepted = receiver.accepted
    assert sorted(r.event_id for r in accepted) == sorted(d.event_id for d in found), "each event accepted once"
    assert {r.event_id for r in receiver.received} == {d.event_id for d in found}, "a retry keeps its event id"
    assert len(receiver.received) == 6
    assert all(r.signed for r in receiver.received), "every attempt passes the reference verifier"
    assert all(r.user_agent == webhooks.USER_AGENT for r in receiver.received)
    completed = next(r for r in accepted if r.event_type == "job.completed")
    assert completed.job == json.loads(found[2].payload_json), "the listing's payload is the body's data"
    # The worker's answer holds the bare path; REST and webhooks give it signed (test_media_urls.py).
    assert "?expires=" in completed.job["result"]["videoUrl"]
    assert bare_json(completed.job) == job_from_proto(done).model_dump(mode="json"), (
        "the job's JSON, as REST answers it"
    )
    assert next(r for r in accepted if r.event_type == "job.queued").job["status"] == "queued"
    assert counter("delivered") - delivered_before == 3


async def test_a_commit_wakes_the_sender_without_waiting_for_its_poll(start_service: ServiceFactory) -> None:
    service = await start_service(webhook_poll_interval=30)
    with webhook_receiver(SECRET) as receiver:
        await asyncio.sleep(0.2)  # the sender's first round is over: it now waits up to 30 s
        started = time.monotonic()
        await create_job(service.jobs, webhook_url=receiver.url)

        await receiver.wait_accepted(1, timeout=5)

    assert time.monotonic() - started < 5


async def test_the_event_filter_posts_only_the_named_events(start_service: ServiceFactory) -> None:
    service = await start_service()
    with webhook_receiver(SECRET) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url, webhook_events=["job.completed"])
        await complete(service.lifecycle, job.id)

        found = await wait_deliveries(service.jobs, job.id, all_delivered)

    assert [d.event_type for d in found] == ["job.completed"]
    assert [r.event_type for r in receiver.received] == ["job.completed"]
    assert (job.webhook_url, list(job.webhook_events)) == (receiver.url, ["job.completed"])


async def test_a_job_without_a_webhook_has_no_deliveries(start_service: ServiceFactory) -> None:
    service = await start_service()
    job = await create_job(service.jobs)
    await complete(service.lifecycle, job.id)

    assert await deliveries_of(service.jobs, job.id) == []
    assert not job.HasField("webhook_url")


async def test_cancel_and_retry_are_events_too(start_service: ServiceFactory) -> None:
    service = await start_service()
    with webhook_receiver(SECRET) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url, webhook_events=["job.retrying", "job.cancelled"])
        await service.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w"))
        await service.lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job.id, error_message="provider timed out"))
        await service.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))

        found = await wait_deliveries(service.jobs, job.id, lambda f: len(f) == 2 and all_delivered(f))

    assert [d.event_type for d in found] == ["job.retrying", "job.cancelled"]
    retrying = next(r for r in receiver.accepted if r.event_type == "job.retrying").job
    assert (retrying["status"], retrying["retryCount"], retrying["errorMessage"]) == ("queued", 1, "provider timed out")


async def test_an_always_failing_receiver_ends_dead_and_redeliver_delivers_once_healed(
    start_service: ServiceFactory,
) -> None:
    service = await start_service(webhook_retry_for_hours=0.5 / 3600)  # a half-second retry window
    with webhook_receiver(SECRET, failing=True) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url, webhook_events=["job.queued"])
        [dead] = await wait_deliveries(
            service.jobs, job.id, lambda f: len(f) == 1 and f[0].state == webhooks_pb2.DELIVERY_STATE_DEAD
        )
        assert dead.attempts >= 2 and dead.last_status_code == 500 and dead.last_error == "status 500"
        letters = await service.jobs.ListDeliveries(
            webhooks_pb2.ListDeliveriesRequest(state=webhooks_pb2.DELIVERY_STATE_DEAD)
        )
        assert [d.id for d in letters.deliveries] == [dead.id] and letters.total == 1
        attempts_while_failing = len(receiver.received)
        await asyncio.sleep(0.5)
        assert len(receiver.received) == attempts_while_failing, "a dead delivery is not attempted again"

        receiver.failing = False
        again = await service.jobs.Redeliver(webhooks_pb2.RedeliverRequest(id=dead.id))
        assert (again.state, again.attempts, again.event_id) == (webhooks_pb2.DELIVERY_STATE_PENDING, 0, dead.event_id)
        [delivered] = await wait_deliveries(service.jobs, job.id, all_delivered)
        await asyncio.sleep(0.3)

    assert len(receiver.accepted) == 1, "delivered once"
    assert receiver.accepted[0].event_id == dead.event_id
    assert delivered.attempts == 1 and delivered.HasField("delivered_at")
    letters = await service.jobs.ListDeliveries(
        webhooks_pb2.ListDeliveriesRequest(state=webhooks_pb2.DELIVERY_STATE_DEAD)
    )
    assert letters.total == 0


async def test_a_slow_receiver_does_not_slow_job_processing(start_service: ServiceFactory) -> None:
    service = await start_service(webhook_concurrency=1, webhook_timeout_seconds=5)
    with webhook_receiver(SECRET, delay=2.0) as receiver:
        started = time.monotonic()
        created = [await create_job(service.jobs, webhook_url=receiver.url) for _ in range(3)]
        for job in created:
            await complete(service.lifecycle, job.id)
        elapsed = time.monotonic() - started
        held = await asyncio.to_thread(receiver.holding.wait, 5)

    assert held, "the receiver was holding a delivery meanwhile"
    # Waiting on the receiver would take 9 x 2 s; the budget leaves room for a loaded machine.
    assert elapsed < 4, f"9 transitions took {elapsed:.2f}s beside a receiver that takes 2 s per POST"


async def test_the_reaper_announces_the_jobs_it_takes_back(own_database_url: str, redis_url: str) -> None:
    prefix = f"w{uuid.uuid4().hex[:10]}-"
    settings = jobs_settings(**QUICK, celery_key_prefix=prefix, dispatch_interval=0.1, job_lease_seconds=0.5)
    server = await start_brokered_jobs(settings, database_url=own_database_url, redis_url=redis_url)
    try:
        async with jobs_clients(server.port) as clients:
            jobs = clients.jobs
            with webhook_receiver(SECRET) as receiver:
                job = await create_job(jobs, webhook_url=receiver.url, webhook_events=["job.retrying"], max_retries=1)
                await clients.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="silent-worker"))
                [found] = await wait_deliveries(jobs, job.id, all_delivered)
    finally:
        await server.stop(0)
        drop_keys(redis_url, prefix)

    assert found.event_type == "job.retrying"
    assert receiver.accepted[0].job["retryCount"] == 1


async def test_a_jobs_service_restart_in_the_middle_loses_no_delivery(
    own_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    prefix = f"w{uuid.uuid4().hex[:10]}-"
    env = clean_env(
        DATABASE_URL=own_database_url,
        REDIS_URL=redis_url,
        CELERY_KEY_PREFIX=prefix,
        MIGRATE_ON_START="false",
        JOBS_GRPC_PORT="0",
        JOBS_METRICS_PORT="0",
        GRPC_BIND_HOST="127.0.0.1",
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_CONCURRENCY="1",
        WEBHOOK_TIMEOUT_SECONDS="1",
        WEBHOOK_RETRY_BASE_SECONDS="0.05",
        WEBHOOK_RETRY_MAX_SECONDS="0.2",
        WEBHOOK_POLL_INTERVAL="0.1",
    )
    with webhook_receiver(SECRET, delay=0.5) as receiver:
        first = ServiceProcess("services.jobs", env, cwd=tmp_path)
        try:
            port = first.wait_event("jobs.serving")["grpc_port"]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await wait_serving(channel)
                jobs = jobs_pb2_grpc.JobServiceStub(channel)
                created = [await create_job(jobs, webhook_url=receiver.url) for _ in range(3)]
                # A POST is in flight (one slot: the other two wait) when the process dies.
                assert await asyncio.to_thread(receiver.holding.wait, 10)
        finally:
            first.process.kill()
            first.process.wait()
        assert len(receiver.accepted) < 3, "the crash came before every delivery was done"

        second = ServiceProcess("services.jobs", env, cwd=tmp_path)
        try:
            port = second.wait_event("jobs.serving")["grpc_port"]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                jobs = jobs_pb2_grpc.JobServiceStub(channel)
                found = [(await wait_deliveries(jobs, job.id, all_delivered, timeout=30))[0] for job in created]
        finally:
            assert second.stop() == 0, second.output()
            drop_keys(redis_url, prefix)

    assert {r.event_id for r in receiver.accepted} == {d.event_id for d in found}, "every event arrived"
    assert all(r.signed for r in receiver.received)
    assert "rcv-secret-token" not in first.output() + second.output(), "a receiver's URL token never reaches a log"
    assert SECRET not in first.output() + second.output()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"webhook_url": "/relative/hook"}, "webhook_url"),
        ({"webhook_url": "https://"}, "webhook_url"),
        ({"webhook_url": "https://user:pass@example.com/hook"}, "webhook_url"),
        ({"webhook_url": "https://example.com/a b"}, "webhook_url"),
        ({"webhook_url": "https://example.com:99999/hook"}, "webhook_url"),
        ({"webhook_url": "https://example.com/" + "a" * 2048}, "webhook_url"),
        ({"webhook_url": ""}, "webhook_url"),
        ({"webhook_url": "https://example.com/hook", "webhook_events": ["job.exploded"]}, "webhook_events"),
        ({"webhook_url": "https://example.com/hook", "webhook_events": ["job.failed", "job.failed"]}, "webhook_events"),
        ({"webhook_events": ["job.failed"]}, "webhook_events"),
    ],
)
async def test_a_bad_webhook_is_invalid_argument_naming_the_field(
    jobs: JobServiceAsyncStub, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_job(jobs, **fields)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"{field}:")


async def test_the_webhook_is_part_of_the_idempotency_fingerprint(jobs: JobServiceAsyncStub) -> None:
    user, key = f"user-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    first = await create_job(jobs, user_id=user, idempotency_key=key, webhook_url="https://example.com/a")
    again = await create_job(jobs, user_id=user, idempotency_key=key, webhook_url="https://example.com/a")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_job(jobs, user_id=user, idempotency_key=key, webhook_url="https://example.com/b")

    assert again.id == first.id
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (
            lambda j: j.ListJobDeliveries(webhooks_pb2.ListJobDeliveriesRequest(job_id="cnotthere0000000000000000")),
            "NOT_FOUND",
        ),
        (lambda j: j.ListJobDeliveries(webhooks_pb2.ListJobDeliveriesRequest(job_id="../x")), "NOT_FOUND"),
        (lambda j: j.Redeliver(webhooks_pb2.RedeliverRequest(id="cnotthere0000000000000000")), "NOT_FOUND"),
        (lambda j: j.Redeliver(webhooks_pb2.RedeliverRequest(id="")), "NOT_FOUND"),
        (lambda j: j.ListDeliveries(webhooks_pb2.ListDeliveriesRequest(take=101)), "INVALID_ARGUMENT"),
        (lambda j: j.ListDeliveries(webhooks_pb2.ListDeliveriesRequest(skip=-1)), "INVALID_ARGUMENT"),
        (
            lambda j: j.ListDeliveries(
                webhooks_pb2.ListDeliveriesRequest(state=webhooks_pb2.DeliveryState.ValueType(9))
            ),
            "INVALID_ARGUMENT",
        ),
    ],
)
async def test_bad_delivery_requests_are_refused(jobs: JobServiceAsyncStub, call: Any, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(jobs)

    assert caught.value.code().name == code


async def test_a_delivered_job_passes_the_reference_verifier_and_a_tampered_body_does_not(
    start_service: ServiceFactory,
) -> None:
    service = await start_service()
    with webhook_receiver(SECRET) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url, webhook_events=["job.completed"])
        done = await complete(service.lifecycle, job.id)
        [delivery] = await wait_deliveries(service.jobs, job.id, all_delivered)

    [received] = receiver.received
    body = Webhook(SECRET).verify(received.body, received.headers)
    assert body == {
        "type": "job.completed",
        "timestamp": webhooks.event_time(delivery.created_at.ToDatetime(tzinfo=UTC)),
        "data": body["data"],
    }
    # The worker's answer holds the bare path; the body gives it signed (test_media_urls.py).
    assert bare_json(body["data"]) == job_from_proto(done).model_dump(mode="json")
    assert received.event_id == delivery.event_id
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60
    assert received.headers["webhook-signature"].startswith("v1,")
    assert "webhook-event" not in received.headers, "the type is in the body"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(received.body.replace(b'"completed"', b'"failed"'), received.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(PREVIOUS_SECRET).verify(received.body, received.headers)


async def test_during_a_rotation_every_delivery_verifies_with_either_secret(start_service: ServiceFactory) -> None:
    service = await start_service(webhook_secret=f"{SECRET} {PREVIOUS_SECRET}")
    with webhook_receiver(PREVIOUS_SECRET) as receiver:  # a receiver that has not moved over yet
        job = await create_job(service.jobs, webhook_url=receiver.url, webhook_events=["job.queued"])
        await wait_deliveries(service.jobs, job.id, all_delivered)

    [received] = receiver.received
    assert received.signed and received.verifies_with(SECRET)
    assert len(received.headers["webhook-signature"].split(" ")) == 2, "one signature per secret"


async def test_every_attempt_and_redelivery_sends_the_same_webhook_id_and_body(start_service: ServiceFactory) -> None:
    service = await start_service()
    with webhook_receiver(SECRET, fail_first=2) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url, webhook_events=["job.queued"])
        [delivered] = await wait_deliveries(service.jobs, job.id, all_delivered)
        await service.jobs.Redeliver(webhooks_pb2.RedeliverRequest(id=delivered.id))
        await receiver.wait_until(lambda r: len(r.accepted) == 2)

    assert len(receiver.received) == 4, "two failed attempts, the delivery and the redelivery"
    assert {r.event_id for r in receiver.received} == {delivered.event_id}
    assert len({r.body for r in receiver.received}) == 1, "byte-identical bodies"
    assert all(r.signed for r in receiver.received)
    assert receiver.received[0].envelope["data"] == json.loads(delivered.payload_json)


async def test_without_webhook_secret_deliveries_are_signed_with_the_secret_derived_from_secret_key(
    start_service: ServiceFactory,
) -> None:
    [derived] = webhooks.signing_secrets(jobs_settings(webhook_secret=None))
    service = await start_service(webhook_secret=None)
    with webhook_receiver(derived) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url, webhook_events=["job.queued"])
        await wait_deliveries(service.jobs, job.id, all_delivered)

    assert [r.signed for r in receiver.received] == [True]


def test_backoff_doubles_up_to_the_maximum_with_jitter() -> None:
    policy = DeliveryPolicy(keys=(b"s3cret-value",), retry_base=30, retry_max=3600)
    rng = random.Random(7)

    delays = [backoff(attempt, policy, rng) for attempt in range(1, 12)]

    assert 15 <= delays[0] <= 30 and 30 <= delays[1] <= 60 and 60 <= delays[2] <= 120
    assert all(1800 <= delay <= 3600 for delay in delays[7:])


def test_the_default_schedule_retries_for_at_least_a_day() -> None:
    settings = JobsSettings(_env_file=None)

    assert settings.webhook_retry_for_hours >= 24
    assert "s3cret-value" not in repr(DeliveryPolicy(keys=(b"s3cret-value",)))
    assert settings.webhook_secret is None
