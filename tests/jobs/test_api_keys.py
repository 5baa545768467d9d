"""Per-user API keys over gRPC: the admin manages them, a user key acts for its user only."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from services.core.auth import KEY_CACHE_SECONDS
from services.jobs.server import JobsServer, start_jobs_server
from tests.conftest import jobs_settings, wait_serving
from tests.support.brokers import drop_keys
from tests.support.factories import create_request, unique_user, video_result
from tests.support.internal import jobs_clients
from videogen.v1 import jobs_pb2, keys_pb2, lifecycle_pb2, webhooks_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub

ADMIN_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90-admin"
SECRET_KEY = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f-secret"
Metadata = tuple[tuple[str, str], ...]


def key(value: str) -> Metadata:
    return (("x-api-key", value),)


ADMIN = key(ADMIN_KEY)


@dataclass
class Keyed:
    """A production jobs service (keys required) with Redis, and its clients."""

    jobs: JobServiceAsyncStub
    lifecycle: JobLifecycleServiceAsyncStub
    server: JobsServer

    async def user_key(self, user_id: str) -> Metadata:
        """A fresh key of user_id, as metadata."""
        issued = await self.jobs.CreateApiKey(keys_pb2.CreateApiKeyRequest(user_id=user_id, name="t"), metadata=ADMIN)
        return key(issued.key)


@pytest.fixture
async def keyed(own_database_url: str, redis_url: str) -> AsyncIterator[Keyed]:
    prefix = f"k{uuid.uuid4().hex[:10]}-"
    settings = jobs_settings(
        app_env="production",
        api_key=ADMIN_KEY,
        secret_key=SECRET_KEY,
        celery_key_prefix=prefix,
        jobs_watch_keepalive_seconds=0.3,
    )
    server = await start_jobs_server(
        settings, database_url=own_database_url, address="127.0.0.1:0", redis_url=redis_url
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await wait_serving(channel)
    async with jobs_clients(server.port, secret_key=SECRET_KEY) as clients:
        yield Keyed(clients.jobs, clients.lifecycle, server)
    await server.stop(0)
    drop_keys(redis_url, prefix)


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_in_production_a_call_without_a_key_or_with_an_unknown_one_is_unauthenticated(keyed: Keyed) -> None:
    request = jobs_pb2.ListJobsRequest()

    assert await code_of(keyed.jobs.ListJobs(request)) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        await code_of(keyed.jobs.ListJobs(request, metadata=key("vgk_" + "x" * 43))) == grpc.StatusCode.UNAUTHENTICATED
    )
    assert await code_of(keyed.jobs.ListJobs(request, metadata=key("wrong"))) == grpc.StatusCode.UNAUTHENTICATED
    assert await code_of(keyed.jobs.ListJobs(request, metadata=ADMIN)) == grpc.StatusCode.OK


async def test_a_created_key_is_shown_once_and_listed_without_its_secret(keyed: Keyed) -> None:
    user = unique_user()
    created = await keyed.jobs.CreateApiKey(keys_pb2.CreateApiKeyRequest(user_id=user, name="mobile"), metadata=ADMIN)

    listed = await keyed.jobs.ListApiKeys(keys_pb2.ListApiKeysRequest(user_id=user), metadata=ADMIN)

    assert created.key.startswith("vgk_") and len(created.key) == 47
    assert (created.user_id, created.name, created.prefix) == (user, "mobile", created.key[:8])
    [shown] = listed.api_keys
    assert (shown.id, shown.HasField("key"), listed.total) == (created.id, False, 1)


async def test_a_user_keys_create_defaults_to_its_user_and_cannot_name_another(keyed: Keyed) -> None:
    user = unique_user()
    mine = await keyed.user_key(user)

    job = await keyed.jobs.CreateJob(jobs_pb2.CreateJobRequest(prompt="a cat"), metadata=mine)
    named = await keyed.jobs.CreateJob(create_request(user_id=user), metadata=mine)
    other = await code_of(keyed.jobs.CreateJob(create_request(user_id=unique_user()), metadata=mine))

    assert (job.user_id, named.user_id) == (user, user)
    assert other == grpc.StatusCode.PERMISSION_DENIED


async def test_the_admin_must_name_the_user_of_a_create(keyed: Keyed) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keyed.jobs.CreateJob(jobs_pb2.CreateJobRequest(prompt="a cat"), metadata=ADMIN)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("user_id:")


async def test_another_users_job_is_not_found_for_every_call(keyed: Keyed) -> None:
    owner, intruder = await keyed.user_key(unique_user()), await keyed.user_key(unique_user())
    job = await keyed.jobs.CreateJob(jobs_pb2.CreateJobRequest(prompt="mine"), metadata=owner)
    jobs = keyed.jobs

    calls = {
        "GetJob": jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id), metadata=intruder),
        "CancelJob": jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id), metadata=intruder),
        "DeleteJob": jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=job.id), metadata=intruder),
        "ListJobDeliveries": jobs.ListJobDeliveries(
            webhooks_pb2.ListJobDeliveriesRequest(job_id=job.id), metadata=intruder
        ),
        "ListJobAttempts": jobs.ListJobAttempts(jobs_pb2.ListJobAttemptsRequest(id=job.id), metadata=intruder),
    }
    codes = {name: await code_of(call) for name, call in calls.items()}
    with pytest.raises(grpc.aio.AioRpcError) as watched:
        async for _ in jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), metadata=intruder):
            break

    assert codes == dict.fromkeys(calls, grpc.StatusCode.NOT_FOUND)
    assert watched.value.code() == grpc.StatusCode.NOT_FOUND
    still = await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id), metadata=owner)
    assert still.status == jobs_pb2.JOB_STATUS_QUEUED  # the intruder's cancel changed nothing


async def test_the_owner_reads_its_attempts_and_only_the_admin_sees_their_workers(keyed: Keyed) -> None:
    owner = await keyed.user_key(unique_user())
    job = await keyed.jobs.CreateJob(jobs_pb2.CreateJobRequest(prompt="mine"), metadata=owner)
    await keyed.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="node-a/1/t", attempt=0))
    await keyed.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id), metadata=owner)

    request = jobs_pb2.ListJobAttemptsRequest(id=job.id)
    as_owner = await keyed.jobs.ListJobAttempts(request, metadata=owner)
    as_admin = await keyed.jobs.ListJobAttempts(request, metadata=ADMIN)

    assert [(a.outcome, a.worker_id) for a in as_owner.attempts] == [("cancelled", "")]
    assert [(a.outcome, a.worker_id) for a in as_admin.attempts] == [("cancelled", "node-a/1/t")]


async def test_the_owner_reads_cancels_watches_and_deletes_its_job(keyed: Keyed) -> None:
    owner = await keyed.user_key(unique_user())
    job = await keyed.jobs.CreateJob(jobs_pb2.CreateJobRequest(prompt="mine"), metadata=owner)

    read = await keyed.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id), metadata=owner)
    cancelled = await keyed.jobs.CancelJob(jobs_pb2.CancelJobRequest(id=job.id), metadata=owner)
    events = [e async for e in keyed.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id), metadata=owner)]
    deleted = await keyed.jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=job.id), metadata=owner)

    assert read.id == cancelled.id == deleted.id == job.id
    assert [e.type for e in events] == ["job.cancelled"]


async def test_a_user_keys_list_shows_only_its_user(keyed: Keyed) -> None:
    alice, bob = unique_user(), unique_user()
    alice_key = await keyed.user_key(alice)
    for user in (alice, bob, bob):
        await keyed.jobs.CreateJob(create_request(user_id=user), metadata=ADMIN)

    own = await keyed.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=alice_key)
    named = await keyed.jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=alice), metadata=alice_key)
    other = await code_of(keyed.jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=bob), metadata=alice_key))
    everyone = await keyed.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=ADMIN)

    assert {j.user_id for j in own.jobs} == {alice} and own.total == 1
    assert named.total == 1
    assert other == grpc.StatusCode.PERMISSION_DENIED
    assert everyone.total >= 3


async def test_a_user_key_continues_only_its_own_users_list_with_a_cursor(keyed: Keyed) -> None:
    alice, bob = unique_user(), unique_user()
    alice_key, bob_key = await keyed.user_key(alice), await keyed.user_key(bob)
    for user in (alice, alice, bob, bob):
        await keyed.jobs.CreateJob(create_request(user_id=user), metadata=ADMIN)
    alices = await keyed.jobs.ListJobs(jobs_pb2.ListJobsRequest(take=1), metadata=alice_key)
    everyones = await keyed.jobs.ListJobs(jobs_pb2.ListJobsRequest(take=1), metadata=ADMIN)

    following = await keyed.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(take=1, cursor=alices.next_cursor), metadata=alice_key
    )
    codes = [
        await code_of(keyed.jobs.ListJobs(jobs_pb2.ListJobsRequest(cursor=cursor), metadata=bob_key))
        for cursor in (alices.next_cursor, everyones.next_cursor)
    ]

    assert [j.user_id for j in following.jobs] == [alice] and not following.HasField("next_cursor")
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * 2


async def test_admin_only_calls_refuse_a_user_key(keyed: Keyed) -> None:
    user_key = await keyed.user_key(unique_user())
    jobs = keyed.jobs

    calls = {
        "ListDeliveries": jobs.ListDeliveries(webhooks_pb2.ListDeliveriesRequest(), metadata=user_key),
        "Redeliver": jobs.Redeliver(webhooks_pb2.RedeliverRequest(id="c" + "0" * 24), metadata=user_key),
        "GetWebhookSecret": jobs.GetWebhookSecret(webhooks_pb2.GetWebhookSecretRequest(), metadata=user_key),
        "CreateApiKey": jobs.CreateApiKey(keys_pb2.CreateApiKeyRequest(user_id="x", name="x"), metadata=user_key),
        "ListApiKeys": jobs.ListApiKeys(keys_pb2.ListApiKeysRequest(), metadata=user_key),
        "DeleteApiKey": jobs.DeleteApiKey(keys_pb2.DeleteApiKeyRequest(id="c" + "0" * 24), metadata=user_key),
    }

    assert {name: await code_of(call) for name, call in calls.items()} == dict.fromkeys(
        calls, grpc.StatusCode.PERMISSION_DENIED
    )


async def test_a_deleted_key_stops_working_within_five_seconds(keyed: Keyed) -> None:
    user = unique_user()
    issued = await keyed.jobs.CreateApiKey(keys_pb2.CreateApiKeyRequest(user_id=user, name="t"), metadata=ADMIN)
    request = jobs_pb2.ListJobsRequest()
    assert await code_of(keyed.jobs.ListJobs(request, metadata=key(issued.key))) == grpc.StatusCode.OK

    deleted = await keyed.jobs.DeleteApiKey(keys_pb2.DeleteApiKeyRequest(id=issued.id), metadata=ADMIN)
    began = time.monotonic()
    while await code_of(keyed.jobs.ListJobs(request, metadata=key(issued.key))) == grpc.StatusCode.OK:
        assert time.monotonic() - began < 5, "the deleted key still works after 5 s"
        await asyncio.sleep(0.1)

    assert deleted.id == issued.id
    assert KEY_CACHE_SECONDS < 5
    again = await code_of(keyed.jobs.DeleteApiKey(keys_pb2.DeleteApiKeyRequest(id=issued.id), metadata=ADMIN))
    assert again == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"user_id": "no spaces", "name": "n"}, "user_id"), ({"user_id": "u", "name": ""}, "name"),
     ({"user_id": "u", "name": "x" * 129}, "name")],
)  # fmt: skip
async def test_a_bad_key_request_is_invalid_naming_the_field(keyed: Keyed, fields: dict[str, str], field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await keyed.jobs.CreateApiKey(keys_pb2.CreateApiKeyRequest(**fields), metadata=ADMIN)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"{field}:")


async def test_the_worker_rpcs_take_the_service_credential_not_a_key(keyed: Keyed) -> None:
    job = await keyed.jobs.CreateJob(create_request(), metadata=ADMIN)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{keyed.server.port}") as plain:
        from videogen.v1 import lifecycle_pb2_grpc

        stub = lifecycle_pb2_grpc.JobLifecycleServiceStub(plain)
        refused = await code_of(stub.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w"), metadata=ADMIN))

    started = await keyed.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w"))
    assert refused == grpc.StatusCode.UNAUTHENTICATED
    assert started.status == jobs_pb2.JOB_STATUS_PROCESSING


async def test_a_worker_cannot_complete_a_job_with_another_jobs_video(keyed: Keyed) -> None:
    job = await keyed.jobs.CreateJob(create_request(), metadata=ADMIN)
    other = await keyed.jobs.CreateJob(create_request(), metadata=ADMIN)
    await keyed.lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job.id, worker_id="w", attempt=0))

    def complete(result: jobs_pb2.VideoResult, attempt: int = 0) -> Any:
        return keyed.lifecycle.CompleteJob(
            lifecycle_pb2.CompleteJobRequest(
                id=job.id, result=result, used_provider="local", used_model="m", attempt=attempt
            )
        )

    foreign = video_result(other.id)
    later = video_result(job.id, attempt=1)
    mismatched = video_result(job.id, video_url=f"/media/{other.id}.mp4")
    for result in (foreign, later, mismatched):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await complete(result)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith(("result.storage_key:", "result.video_url:"))

    done = await complete(video_result(job.id))
    assert done.result.storage_key == f"{job.id}.mp4"
