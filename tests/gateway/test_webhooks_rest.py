"""Webhooks through the edge: the REST fields, the deliveries of a job, dead letters, redelivery,
and the refusal of non-public targets."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest

from services.core.models import WEBHOOK_EVENTS
from services.gateway.schemas import JobCreate, WebhookEvent
from tests.gateway.conftest import Gateway, GatewayFactory
from tests.support.deliveries import SECRET
from tests.support.factories import bare_json
from tests.support.webhook_receiver import webhook_receiver

TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}
QUICK = {
    "webhook_secret": SECRET,
    "webhook_retry_base_seconds": 0.05,
    "webhook_retry_max_seconds": 0.2,
    "webhook_poll_interval": 0.1,
    "webhook_retry_for_hours": 1 / 3600,  # a one-second retry window: dead letters come quickly
    # No circuit breaker: a dead letter here shows the receiver's last answer, not "circuit open"
    # (tests/jobs test the breaker).
    "webhook_circuit_failures": 0,
}


async def deliveries(gateway: Gateway, job_id: str) -> list[dict[str, Any]]:
    answer = await gateway.client.get(f"/api/v1/jobs/{job_id}/webhooks")
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["deliveries"]
    return found


async def wait_states(gateway: Gateway, job_id: str, states: list[str], timeout: float = 60) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout):
        while True:
            found = await deliveries(gateway, job_id)
            if [d["state"] for d in found] == states:
                return found
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def module_gateway(start_module_gateway: GatewayFactory) -> Gateway:
    """The module's shared gateway, with quick webhooks. Only the first test makes deliveries
    (and counts the dead letters of the whole stack); the others are refused before any job."""
    return await start_module_gateway(stack_options={"jobs": QUICK})


async def test_a_job_posts_each_status_change_to_its_webhook_and_dead_letters_are_redelivered(
    gateway: Gateway,
) -> None:
    client = gateway.client
    with webhook_receiver(SECRET) as receiver:
        created = await client.post(
            "/api/v1/jobs",
            json={"userId": "user-hooks", "prompt": "a lighthouse", "metadata": TINY, "webhookUrl": receiver.url},
        )
        assert created.status_code == 201, created.text
        job = created.json()
        assert (job["webhookUrl"], job["webhookEvents"]) == (receiver.url, [])

        found = await wait_states(gateway, job["id"], ["delivered"] * 3)
        final = (await client.get(f"/api/v1/jobs/{job['id']}")).json()

    assert [d["eventType"] for d in found] == ["job.queued", "job.processing", "job.completed"]
    assert all(r.signed for r in receiver.received), "every delivery passes the reference verifier"
    completed = next(r for r in receiver.accepted if r.event_type == "job.completed")
    # The same but for the media URL's signature, fresh on every answer.
    assert bare_json(completed.job) == bare_json(final), "the body's data is the job's JSON, as GET answers it"
    assert found[2]["payload"] == completed.job and found[2]["eventId"] == completed.event_id

    with webhook_receiver(SECRET, failing=True) as receiver:
        created = await client.post(
            "/api/v1/jobs",
            json={
                "userId": "user-hooks",
                "prompt": "a lighthouse at night",
                "metadata": TINY,
                "webhookUrl": receiver.url,
                "webhookEvents": ["job.completed"],
            },
        )
        job = created.json()
        [dead] = await wait_states(gateway, job["id"], ["dead"])
        letters = (await client.get("/api/v1/webhooks/deliveries", params={"state": "dead"})).json()
        assert [d["id"] for d in letters["deliveries"]] == [dead["id"]]
        assert (letters["total"], letters["skip"], letters["take"]) == (1, 0, 20)
        assert (dead["lastStatusCode"], dead["lastError"]) == (500, "status 500")

        receiver.failing = False
        redelivered = await client.post(f"/api/v1/webhooks/deliveries/{dead['id']}/redeliver")
        assert redelivered.status_code == 200, redelivered.text
        assert (redelivered.json()["state"], redelivered.json()["attempts"]) == ("pending", 0)
        [delivered] = await wait_states(gateway, job["id"], ["delivered"])

    assert [r.event_id for r in receiver.accepted] == [dead["eventId"]], "delivered once, with its event id"
    assert delivered["deliveredAt"] is not None
    assert (await client.get("/api/v1/webhooks/deliveries", params={"state": "dead"})).json()["total"] == 0


BAD_WEBHOOKS: list[tuple[dict[str, Any], list[Any]]] = [
    ({"webhookUrl": "gopher://example.com/"}, ["body", "webhookUrl"]),
    ({"webhookUrl": "https://user:secret@example.com/"}, ["body", "webhookUrl"]),
    ({"webhookUrl": "example.com/hook"}, ["body", "webhookUrl"]),
    ({"webhookUrl": "https://example.com/" + "x" * 2100}, ["body", "webhookUrl"]),
    ({"webhookUrl": 5}, ["body", "webhookUrl"]),
    ({"webhookUrl": "https://example.com/", "webhookEvents": ["job.nope"]}, ["body", "webhookEvents", 0]),
    ({"webhookUrl": "https://example.com/", "webhookEvents": "job.failed"}, ["body", "webhookEvents"]),
    ({"webhookUrl": "https://example.com/", "webhookEvents": ["job.failed"] * 2}, ["body", "webhookEvents"]),
    ({"webhookEvents": ["job.failed"]}, ["body", "webhookEvents"]),
]
BAD_DELIVERY_CALLS: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/api/v1/jobs/cnotthere0000000000000000/webhooks", {}, 404),
    ("GET", "/api/v1/jobs/cnotthere0000000000000000/webhooks", {"take": 0}, 422),
    ("GET", "/api/v1/webhooks/deliveries", {"state": "lost"}, 422),
    ("GET", "/api/v1/webhooks/deliveries", {"take": 101}, 422),
    ("GET", "/api/v1/webhooks/deliveries", {"skip": -1}, 422),
    ("POST", "/api/v1/webhooks/deliveries/cnotthere0000000000000000/redeliver", {}, 404),
    ("POST", "/api/v1/webhooks/deliveries/NOT-AN-ID/redeliver", {}, 404),
]


async def test_bad_webhooks_and_delivery_calls_are_refused_naming_the_field(gateway: Gateway) -> None:
    for extra, loc in BAD_WEBHOOKS:
        answer = await gateway.client.post("/api/v1/jobs", json={"userId": "u", "prompt": "p", **extra})
        assert answer.status_code == 422, (extra, answer.text)
        assert answer.json()["detail"][0]["loc"] == loc, extra

    for method, path, params, status in BAD_DELIVERY_CALLS:
        answer = await gateway.client.request(method, path, params=params)
        assert answer.status_code == status, (path, params, answer.text)
        assert "detail" in answer.json()

    document = (await gateway.client.get("/openapi.json")).json()
    assert {"/api/v1/jobs/{job_id}/webhooks", "/api/v1/webhooks/deliveries"} <= set(document["paths"])
    assert "/api/v1/webhooks/deliveries/{delivery_id}/redeliver" in document["paths"]
    assert {"webhookUrl", "webhookEvents"} <= set(document["components"]["schemas"]["JobCreate"]["properties"])
    assert get_args(WebhookEvent) == WEBHOOK_EVENTS
    assert JobCreate.model_json_schema()["properties"]["webhookUrl"]["description"]


async def test_a_webhook_url_aimed_at_a_private_address_is_422_naming_it_where_private_targets_are_refused(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(stack_options={"jobs": {**QUICK, "webhook_allow_private_targets": False}})
    for url in (
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://localhost/",
        "http://10.0.0.5/",
        "http://169.254.169.254/latest/meta-data",
    ):
        answer = await gateway.client.post("/api/v1/jobs", json={"userId": "u", "prompt": "p", "webhookUrl": url})

        assert answer.status_code == 422, (url, answer.text)
        assert answer.json()["detail"][0]["loc"] == ["body", "webhookUrl"], url
