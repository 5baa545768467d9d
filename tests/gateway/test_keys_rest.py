"""The trust boundary through the edge in production: API keys over REST and gRPC, per-user rules,
and the workers' RPCs out of reach."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.gateway.conftest import ADMIN_KEY, Gateway, GatewayFactory, cancel_unfinished, production
from tests.support.factories import unique_user
from videogen.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    routing_pb2,
    routing_pb2_grpc,
)

ADMIN = {"X-API-Key": ADMIN_KEY}
JOB = {"prompt": "a lighthouse at dawn", "metadata": {"provider": "scripted"}}


@pytest.fixture(scope="module")
async def module_edge(start_module_gateway: GatewayFactory) -> Gateway:
    """A production system that the module's tests share, each with users of its own."""
    return await start_module_gateway(**production())


@pytest.fixture
async def edge(module_edge: Gateway) -> AsyncIterator[Gateway]:
    """The module's production system; the jobs a test left unfinished are cancelled after it."""
    yield module_edge
    await cancel_unfinished(module_edge.stack, metadata=(("x-api-key", ADMIN_KEY),))


async def user_key(edge: Gateway, user_id: str) -> dict[str, str]:
    created = await edge.client.post("/api/v1/api-keys", json={"userId": user_id, "name": "test"}, headers=ADMIN)
    assert created.status_code == 201, created.text
    return {"X-API-Key": created.json()["key"]}


async def test_the_queues_are_the_admins_to_read(edge: Gateway) -> None:
    user = await user_key(edge, unique_user())

    as_admin = await edge.client.get("/api/v1/queues", headers=ADMIN)
    as_user = await edge.client.get("/api/v1/queues", headers=user)
    anonymous = await edge.client.get("/api/v1/queues")

    assert as_admin.status_code == 200, as_admin.text
    assert [q["queue"] for q in as_admin.json()["queues"]] == ["high_priority", "default", "low_priority"]
    assert set(as_admin.json()["queues"][0]) == {"queue", "waiting", "scheduled", "running", "oldestWaitSeconds"}
    assert (as_user.status_code, anonymous.status_code) == (403, 401)


async def test_the_admin_creates_lists_and_deletes_keys(edge: Gateway) -> None:
    user = unique_user()
    created = await edge.client.post("/api/v1/api-keys", json={"userId": user, "name": "mobile"}, headers=ADMIN)
    body = created.json()

    listed = await edge.client.get("/api/v1/api-keys", params={"userId": user}, headers=ADMIN)
    deleted = await edge.client.delete(f"/api/v1/api-keys/{body['id']}", headers=ADMIN)
    gone = await edge.client.delete(f"/api/v1/api-keys/{body['id']}", headers=ADMIN)

    assert created.status_code == 201
    assert set(body) == {"id", "userId", "name", "prefix", "key", "createdAt"}
    assert (body["userId"], body["name"], body["key"][:4]) == (user, "mobile", "vgk_")
    assert listed.status_code == 200
    assert [(k["id"], "key" in k) for k in listed.json()["apiKeys"]] == [(body["id"], False)]
    assert (deleted.status_code, gone.status_code) == (204, 404)


async def test_a_deleted_key_stops_working_within_five_seconds(edge: Gateway) -> None:
    created = await edge.client.post("/api/v1/api-keys", json={"userId": unique_user(), "name": "n"}, headers=ADMIN)
    mine = {"X-API-Key": created.json()["key"]}
    assert (await edge.client.get("/api/v1/jobs", headers=mine)).status_code == 200

    await edge.client.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=ADMIN)
    began = time.monotonic()
    while (await edge.client.get("/api/v1/jobs", headers=mine)).status_code == 200:
        assert time.monotonic() - began < 5
        await asyncio.sleep(0.1)

    assert (await edge.client.get("/api/v1/jobs", headers=mine)).status_code == 401


async def test_without_a_key_or_with_an_unknown_one_every_api_route_is_401(edge: Gateway) -> None:
    for headers in ({}, {"X-API-Key": "vgk_" + "A" * 43}, {"X-API-Key": "not-a-key"}):
        answers = [
            await edge.client.get("/api/v1/jobs", headers=headers),
            await edge.client.post("/api/v1/jobs", json={**JOB, "userId": "u"}, headers=headers),
            await edge.client.get("/api/v1/providers/status", headers=headers),
            await edge.client.get("/api/v1/webhooks/secret", headers=headers),
        ]
        assert [a.status_code for a in answers] == [401] * 4, headers
        assert all("detail" in a.json() for a in answers)
    assert (await edge.client.get("/health")).status_code == 200


async def test_a_user_key_creates_for_its_user_and_not_for_another(edge: Gateway) -> None:
    user = unique_user()
    mine = await user_key(edge, user)

    implicit = await edge.client.post("/api/v1/jobs", json=JOB, headers=mine)
    explicit = await edge.client.post("/api/v1/jobs", json={**JOB, "userId": user}, headers=mine)
    other = await edge.client.post("/api/v1/jobs", json={**JOB, "userId": unique_user()}, headers=mine)
    admin_without_user = await edge.client.post("/api/v1/jobs", json=JOB, headers=ADMIN)

    assert (implicit.status_code, implicit.json()["userId"]) == (201, user)
    assert (explicit.status_code, explicit.json()["userId"]) == (201, user)
    assert other.status_code == 403 and "detail" in other.json()
    assert admin_without_user.status_code == 422
    assert admin_without_user.json()["detail"][0]["loc"] == ["body", "userId"]


async def test_another_users_job_is_404_and_lists_show_only_the_keys_user(edge: Gateway) -> None:
    alice, bob = unique_user(), unique_user()
    alice_key, bob_key = await user_key(edge, alice), await user_key(edge, bob)
    job = (await edge.client.post("/api/v1/jobs", json=JOB, headers=alice_key)).json()
    await edge.client.post("/api/v1/jobs", json=JOB, headers=bob_key)
    client, job_id = edge.client, job["id"]

    intruder = [
        await client.get(f"/api/v1/jobs/{job_id}", headers=bob_key),
        await client.delete(f"/api/v1/jobs/{job_id}", headers=bob_key),
        await client.get(f"/api/v1/jobs/{job_id}/events", headers=bob_key),
        await client.get(f"/api/v1/jobs/{job_id}/webhooks", headers=bob_key),
        await client.get(f"/api/v1/jobs/{job_id}/attempts", headers=bob_key),
    ]
    own = await client.get("/api/v1/jobs", headers=alice_key)
    other = await client.get("/api/v1/jobs", params={"userId": bob}, headers=alice_key)
    owner = await client.get(f"/api/v1/jobs/{job_id}", headers=alice_key)

    assert [a.status_code for a in intruder] == [404] * 5
    assert {j["userId"] for j in own.json()["jobs"]} == {alice} and own.json()["total"] == 1
    assert other.status_code == 403
    assert owner.status_code == 200


async def test_a_stream_of_several_jobs_shows_a_user_key_only_its_own(edge: Gateway) -> None:
    alice, bob = unique_user(), unique_user()
    alice_key, bob_key = await user_key(edge, alice), await user_key(edge, bob)
    theirs = (await edge.client.post("/api/v1/jobs", json=JOB, headers=alice_key)).json()
    mine = (await edge.client.post("/api/v1/jobs", json=JOB, headers=bob_key)).json()

    async def opening(headers: dict[str, str]) -> tuple[int, list[str]]:
        """The status and the first two events of a stream of both jobs."""
        params = [("jobId", theirs["id"]), ("jobId", mine["id"])]
        text = ""
        async with edge.client.stream("GET", "/api/v1/events", params=params, headers=headers) as answer:
            async for chunk in answer.aiter_text():
                text += chunk
                if text.count("\n\n") >= 3:  # the retry line and two events
                    break
        return answer.status_code, [block for block in text.split("\n\n") if block.startswith("event: ")][:2]

    (status, events), (stranger, _) = await opening(bob_key), await opening({"X-API-Key": "vgk_" + "A" * 43})

    assert status == 200
    their_id, my_id = theirs["id"], mine["id"]
    assert events[0] == f'event: job.missing\ndata: {{"id":"{their_id}"}}'
    assert events[1].startswith("event: job.") and f'"id":"{my_id}"' in events[1] and alice not in events[1]
    assert stranger == 401


async def test_admin_routes_are_403_for_a_user_key_and_provider_status_is_not(edge: Gateway) -> None:
    mine = await user_key(edge, unique_user())
    client = edge.client

    answers = {
        "deliveries": await client.get("/api/v1/webhooks/deliveries", headers=mine),
        "redeliver": await client.post(f"/api/v1/webhooks/deliveries/c{'0' * 24}/redeliver", headers=mine),
        "secret": await client.get("/api/v1/webhooks/secret", headers=mine),
        "provider test": await client.post("/api/v1/providers/test", json={"provider": "local"}, headers=mine),
        "create key": await client.post("/api/v1/api-keys", json={"userId": "x", "name": "x"}, headers=mine),
        "list keys": await client.get("/api/v1/api-keys", headers=mine),
        "delete key": await client.delete(f"/api/v1/api-keys/c{'0' * 24}", headers=mine),
    }

    assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(answers, 403)
    assert (await client.get("/api/v1/providers/status", headers=mine)).status_code == 200
    secret = await client.get("/api/v1/webhooks/secret", headers=ADMIN)
    assert secret.status_code == 200 and secret.json()["key"].startswith("whsec_")


@pytest.fixture
async def edge_channel(edge: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.edge_port}") as channel:
        yield channel


async def code_of(call: Any) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_grpc_through_the_edge_takes_the_same_keys(edge: Gateway, edge_channel: grpc.aio.Channel) -> None:
    jobs = jobs_pb2_grpc.JobServiceStub(edge_channel)
    user = unique_user()
    mine = (("x-api-key", (await user_key(edge, user))["X-API-Key"]),)
    other = (await edge.client.post("/api/v1/jobs", json={**JOB, "userId": unique_user()}, headers=ADMIN)).json()

    without = await code_of(jobs.ListJobs(jobs_pb2.ListJobsRequest()))
    admin = await jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=(("x-api-key", ADMIN_KEY),))
    created = await jobs.CreateJob(
        jobs_pb2.CreateJobRequest(prompt="p", metadata_json='{"provider":"scripted"}'), metadata=mine
    )
    listed = await jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=mine)
    foreign = await code_of(jobs.GetJob(jobs_pb2.GetJobRequest(id=other["id"]), metadata=mine))

    assert without == grpc.StatusCode.UNAUTHENTICATED
    assert admin.total >= 1
    assert created.user_id == user
    assert [j.id for j in listed.jobs] == [created.id]
    assert foreign == grpc.StatusCode.NOT_FOUND


async def test_the_worker_rpcs_are_not_served_at_the_edge(edge: Gateway, edge_channel: grpc.aio.Channel) -> None:
    admin = (("x-api-key", ADMIN_KEY),)
    lifecycle = lifecycle_pb2_grpc.JobLifecycleServiceStub(edge_channel)
    routing = routing_pb2_grpc.ProviderRoutingServiceStub(edge_channel)
    job = (await edge.client.post("/api/v1/jobs", json={**JOB, "userId": unique_user()}, headers=ADMIN)).json()
    calls = {
        "StartJob": lifecycle.StartJob(lifecycle_pb2.StartJobRequest(id=job["id"], worker_id="x"), metadata=admin),
        "ReportProgress": lifecycle.ReportProgress(lifecycle_pb2.ReportProgressRequest(id=job["id"]), metadata=admin),
        "CompleteJob": lifecycle.CompleteJob(lifecycle_pb2.CompleteJobRequest(id=job["id"]), metadata=admin),
        "FailJob": lifecycle.FailJob(lifecycle_pb2.FailJobRequest(id=job["id"], error_message="x"), metadata=admin),
        "RetryJob": lifecycle.RetryJob(lifecycle_pb2.RetryJobRequest(id=job["id"], error_message="x"), metadata=admin),
        "RecordTelemetry": lifecycle.RecordTelemetry(lifecycle_pb2.RecordTelemetryRequest(), metadata=admin),
        "SelectProvider": routing.SelectProvider(routing_pb2.SelectProviderRequest(job_id="j"), metadata=admin),
        "ReportOutcome": routing.ReportOutcome(routing_pb2.ReportOutcomeRequest(provider="local"), metadata=admin),
        "SyncRouting": routing.SyncRouting(routing_pb2.SyncRoutingRequest(), metadata=admin),
    }

    assert {name: await code_of(call) for name, call in calls.items()} == dict.fromkeys(
        calls, grpc.StatusCode.UNIMPLEMENTED
    )
    # The internal ports themselves refuse them without the service credential, admin key or not.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.stack.server.port}") as direct:
        start = lifecycle_pb2_grpc.JobLifecycleServiceStub(direct).StartJob(
            lifecycle_pb2.StartJobRequest(id=job["id"], worker_id="x"), metadata=admin
        )
        assert await code_of(start) == grpc.StatusCode.UNAUTHENTICATED
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge.stack.providers_server.port}") as direct:
        select = routing_pb2_grpc.ProviderRoutingServiceStub(direct).SelectProvider(
            routing_pb2.SelectProviderRequest(job_id="j"), metadata=admin
        )
        assert await code_of(select) == grpc.StatusCode.UNAUTHENTICATED
        sync = routing_pb2_grpc.ProviderRoutingServiceStub(direct).SyncRouting(
            routing_pb2.SyncRoutingRequest(), metadata=admin
        )
        assert await code_of(sync) == grpc.StatusCode.UNAUTHENTICATED
    still = await edge.client.get(f"/api/v1/jobs/{job['id']}", headers=ADMIN)
    assert still.json()["status"] in ("queued", "processing", "completed")


async def test_reflection_through_the_edge_lists_only_the_public_services(
    edge: Gateway, edge_channel: grpc.aio.Channel
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    stub = reflection_pb2_grpc.ServerReflectionStub(edge_channel)
    refused = await code_of(stub.ServerReflectionInfo(ask()).read())
    replies = [r async for r in stub.ServerReflectionInfo(ask(), metadata=(("x-api-key", ADMIN_KEY),))]

    names = {s.name for s in replies[0].list_services_response.service}
    assert refused == grpc.StatusCode.UNAUTHENTICATED
    assert {"videogen.v1.JobService", "videogen.v1.ProviderService"} <= names
    assert not any(name in names for name in ("videogen.v1.JobLifecycleService", "videogen.v1.ProviderRoutingService"))
