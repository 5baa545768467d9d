"""Per-user quotas: jobs in flight and video-seconds per UTC day, atomic at creation."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.core.db import async_url
from services.gateway.errors import grpc_error_response
from services.jobs.server import JobsServer, start_jobs_server
from services.jobs.settings import JobsSettings
from tests.conftest import jobs_settings
from tests.support.factories import create_request, unique_user, video_result
from tests.support.internal import JobsClients, jobs_clients
from videogen.v1 import jobs_pb2, lifecycle_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub as Stub

StubFactory = Callable[..., Awaitable["Stub"]]


@pytest.fixture
async def start_clients(database_url: str) -> AsyncIterator[Callable[..., Awaitable[JobsClients]]]:
    """Starts jobs services with the given settings; no Redis, so no creation rate limit."""
    servers: list[JobsServer] = []
    async with contextlib.AsyncExitStack() as clients:

        async def start(**overrides: Any) -> JobsClients:
            # Fifty creates of one user queue on its lock, each holding a pooled connection: a
            # pool wait of the tests' usual 1 s fails some of them on a loaded machine.
            settings = jobs_settings(**{"db_connect_timeout": 10.0, **overrides})
            server = await start_jobs_server(settings, database_url=database_url, address="127.0.0.1:0")
            servers.append(server)
            return await clients.enter_async_context(jobs_clients(server.port))

        yield start
    for server in servers:
        await server.stop(0)


@pytest.fixture
def start_jobs(start_clients: Callable[..., Awaitable[JobsClients]]) -> StubFactory:
    """As start_clients, answering the JobService client alone."""

    async def start(**overrides: Any) -> Stub:
        return (await start_clients(**overrides)).jobs

    return start


async def outcomes(calls: list[Awaitable[jobs_pb2.Job]]) -> tuple[list[jobs_pb2.Job], list[grpc.aio.AioRpcError]]:
    """The jobs created and the errors, of calls run at once."""
    answers = await asyncio.gather(*calls, return_exceptions=True)
    errors = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    assert len(errors) + sum(isinstance(a, jobs_pb2.Job) for a in answers) == len(answers), answers
    return [a for a in answers if isinstance(a, jobs_pb2.Job)], errors


async def refusal(call: Awaitable[jobs_pb2.Job]) -> grpc.aio.AioRpcError:
    """The error of a create that must be refused."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def quota_details(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str], float]:
    """The limit a RESOURCE_EXHAUSTED names (QuotaFailure), its numbers (ErrorInfo) and RetryInfo's delay."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    quota, info, retry = error_details_pb2.QuotaFailure(), error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    for detail in status.details:
        detail.Unpack(quota) or detail.Unpack(info) or detail.Unpack(retry)
    return quota.violations[0].description, dict(info.metadata), retry.retry_delay.ToMilliseconds() / 1000


async def execute(database_url: str, statement: str, **values: Any) -> list[tuple[Any, ...]]:
    """Runs one SQL statement in its own transaction; the rows it answers, if any."""
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), values)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def total(jobs: Stub, user: str) -> int:
    return int((await jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=user))).total)


def refusals(limit: str) -> float:
    return REGISTRY.get_sample_value("job_quota_refusals_total", {"limit": limit}) or 0.0


async def test_fifty_concurrent_creates_against_ten_in_flight_accept_exactly_ten(start_jobs: StubFactory) -> None:
    jobs = await start_jobs(quota_max_jobs_in_flight=10)
    user, before = unique_user(), refusals("jobs_in_flight")

    created, errors = await outcomes([jobs.CreateJob(create_request(user_id=user)) for _ in range(50)])

    assert (len(created), len(errors)) == (10, 40)
    assert {e.code() for e in errors} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert await total(jobs, user) == 10
    assert refusals("jobs_in_flight") - before == 40
    limit, numbers, retry_after = quota_details(errors[0])
    assert (limit, numbers) == ("jobs_in_flight", {"max": "10.0", "current": "10.0", "requested": "1.0"})
    assert retry_after == 5
    assert str(errors[0].details()).startswith("quota jobs_in_flight: 10 of 10 jobs in flight used")


async def test_over_quota_is_429_naming_the_limit_with_retry_after(start_jobs: StubFactory) -> None:
    jobs = await start_jobs(quota_max_jobs_in_flight=1)
    user = unique_user()
    await jobs.CreateJob(create_request(user_id=user))

    response = grpc_error_response(await refusal(jobs.CreateJob(create_request(user_id=user))), service="jobs")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "5"
    body = json.loads(bytes(response.body))
    assert body == {
        "detail": "quota jobs_in_flight: 1 of 1 jobs in flight used, this job needs 1; retry after 5 s",
        "limit": "jobs_in_flight",
        "max": 1,
        "current": 1,
        "requested": 1,
        "retryAfterSeconds": 5,
    }


async def test_once_a_job_finishes_the_next_create_passes(
    start_clients: Callable[..., Awaitable[JobsClients]],
) -> None:
    clients = await start_clients(quota_max_jobs_in_flight=2)
    jobs, lifecycle = clients.jobs, clients.lifecycle
    user = unique_user()
    first = await jobs.CreateJob(create_request(user_id=user))
    second = await jobs.CreateJob(create_request(user_id=user))
    await refusal(jobs.CreateJob(create_request(user_id=user)))

    # Processing still counts; completed does not.
    await lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=first.id, worker_id="w1"))
    await refusal(jobs.CreateJob(create_request(user_id=user)))
    await lifecycle.CompleteJob(
        lifecycle_pb2.CompleteJobRequest(
            id=first.id, result=video_result(first.id), used_provider="local", used_model="m"
        )
    )
    third = await jobs.CreateJob(create_request(user_id=user))
    await refusal(jobs.CreateJob(create_request(user_id=user)))
    # A cancelled job is finished too.
    await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=second.id))
    await jobs.CreateJob(create_request(user_id=user))

    assert third.status == jobs_pb2.JOB_STATUS_QUEUED
    assert await total(jobs, user) == 4


async def test_users_are_independent(start_jobs: StubFactory) -> None:
    jobs = await start_jobs(quota_max_jobs_in_flight=1)
    one, other = unique_user(), unique_user()
    await jobs.CreateJob(create_request(user_id=one))
    await refusal(jobs.CreateJob(create_request(user_id=one)))

    created, errors = await outcomes([jobs.CreateJob(create_request(user_id=unique_user())) for _ in range(10)])
    await jobs.CreateJob(create_request(user_id=other))

    assert (len(created), errors) == (10, [])
    assert (await total(jobs, one), await total(jobs, other)) == (1, 1)


async def test_an_idempotent_replay_is_not_refused(start_jobs: StubFactory) -> None:
    jobs = await start_jobs(quota_max_jobs_in_flight=1, quota_video_seconds_per_day=4)
    user = unique_user()
    request = create_request(user_id=user, idempotency_key="order-1")
    first = await jobs.CreateJob(request)

    replays = await asyncio.gather(*(jobs.CreateJob(request) for _ in range(5)))
    refused = await refusal(jobs.CreateJob(create_request(user_id=user, idempotency_key="order-2")))

    assert {job.id for job in replays} == {first.id}
    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await total(jobs, user) == 1


def seconds_to_midnight_utc() -> float:
    now = datetime.now(UTC)
    return ((now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0) - now).total_seconds()


async def test_the_daily_video_seconds_refuse_the_create_that_would_pass_them(start_jobs: StubFactory) -> None:
    jobs = await start_jobs(quota_video_seconds_per_day=10)
    user, before = unique_user(), refusals("video_seconds_per_day")
    await jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 3.5}))
    await jobs.CreateJob(create_request(user_id=user))  # no durationSeconds: charged 4

    refused = await refusal(jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 3})))
    await jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 2.5}))  # exactly 10
    await refusal(jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 1})))

    assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    limit, numbers, retry_after = quota_details(refused)
    assert (limit, numbers) == ("video_seconds_per_day", {"max": "10.0", "current": "7.5", "requested": "3.0"})
    assert abs(retry_after - seconds_to_midnight_utc()) < 30
    body = json.loads(bytes(grpc_error_response(refused, service="jobs").body))
    assert (body["limit"], body["max"], body["current"], body["requested"]) == ("video_seconds_per_day", 10, 7.5, 3)
    assert refusals("video_seconds_per_day") - before == 2
    assert await total(jobs, user) == 3


async def test_finished_jobs_still_count_against_the_day(start_jobs: StubFactory) -> None:
    jobs = await start_jobs(quota_video_seconds_per_day=8)
    user = unique_user()
    job = await jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 8}))
    await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))

    refused = await refusal(jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 1})))

    assert quota_details(refused)[0] == "video_seconds_per_day"


async def test_deleting_jobs_gives_no_seconds_back(start_jobs: StubFactory, database_url: str) -> None:
    jobs = await start_jobs(quota_video_seconds_per_day=10)
    user = unique_user()
    ids = [
        (await jobs.CreateJob(create_request(user_id=user, metadata=metadata))).id
        for metadata in ({}, {"durationSeconds": 5})
    ]
    for job_id in ids:
        await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job_id))
    # A row of a past day, useless by now: the next deletion of the user's jobs removes it.
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    await execute(database_url, "INSERT INTO quota_deleted_usage VALUES (:user, :day, 50)", user=user, day=yesterday)

    for job_id in ids:
        await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=job_id))
    refused = await refusal(jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 2})))

    assert await total(jobs, user) == 0
    assert quota_details(refused)[1]["current"] == "9.0"
    kept = await execute(
        database_url, "SELECT day, video_seconds FROM quota_deleted_usage WHERE user_id = :user", user=user
    )
    assert kept == [(datetime.now(UTC).date(), 9)]


async def test_a_job_of_a_past_day_deleted_today_is_not_kept(start_jobs: StubFactory, database_url: str) -> None:
    jobs = await start_jobs()
    job = await jobs.CreateJob(create_request())
    await jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id))
    await execute(database_url, "UPDATE jobs SET created_at = now() - interval '1 day' WHERE id = :id", id=job.id)

    await jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=job.id))

    assert (
        await execute(database_url, "SELECT * FROM quota_deleted_usage WHERE user_id = :user", user=job.user_id) == []
    )


async def test_concurrent_creates_never_pass_the_daily_seconds(start_jobs: StubFactory) -> None:
    jobs = await start_jobs(quota_video_seconds_per_day=10)
    user = unique_user()

    created, errors = await outcomes(
        [jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 1})) for _ in range(30)]
    )

    assert (len(created), len(errors)) == (10, 20)
    assert {quota_details(e)[0] for e in errors} == {"video_seconds_per_day"}


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        ("long", "must be a number"),
        (True, "must be a number"),
        (0, "must be more than 0"),
        (-3, "must be more than 0"),
        (3601, "must be more than 0 and at most 3600"),
        (11, "must be at most 10 seconds, the daily video-seconds quota"),
    ],
)
async def test_a_duration_the_quota_cannot_charge_is_invalid(
    start_jobs: StubFactory, duration: object, message: str
) -> None:
    jobs = await start_jobs(quota_video_seconds_per_day=10)
    user = unique_user()

    error = await refusal(jobs.CreateJob(create_request(user_id=user, metadata={"durationSeconds": duration})))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(error.details()).startswith(f"metadata.durationSeconds: {message}"), error.details()
    assert await total(jobs, user) == 0


async def test_jobs_stored_before_the_quota_with_odd_durations_are_charged_the_default(
    start_jobs: StubFactory, database_url: str
) -> None:
    """Rows stored before durations were validated at creation may hold anything."""
    unlimited, limited = await start_jobs(), await start_jobs(quota_video_seconds_per_day=12)
    user = unique_user()
    for odd in ("long", -3, None, {"x": 1}):
        job = await unlimited.CreateJob(create_request(user_id=user))
        await execute(
            database_url,
            "UPDATE jobs SET metadata = CAST(:metadata AS jsonb) WHERE id = :id",
            metadata=json.dumps({"durationSeconds": odd}),
            id=job.id,
        )

    refused = await refusal(limited.CreateJob(create_request(user_id=user, metadata={"durationSeconds": 1})))

    assert quota_details(refused)[1]["current"] == "16.0"


async def test_quotas_are_off_by_default_and_validated() -> None:
    settings = JobsSettings(_env_file=None)
    assert (settings.quota_max_jobs_in_flight, settings.quota_video_seconds_per_day) == (0, 0)
    for name in ("quota_max_jobs_in_flight", "quota_video_seconds_per_day"):
        with pytest.raises(ValidationError, match=name):
            jobs_settings(**{name: -1})
