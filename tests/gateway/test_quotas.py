"""Per-user quotas through the edge: 429 naming the limit, with Retry-After."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from services.jobs.server import start_jobs_server
from tests.conftest import jobs_settings
from tests.gateway.conftest import GatewayFactory
from tests.support.factories import unique_user

TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}


async def test_fifty_concurrent_creates_against_ten_in_flight_are_ten_201_and_forty_429(
    start_gateway: GatewayFactory, own_database_url: str
) -> None:
    # The gateway talks to a jobs service with the quota, on the stack's database.
    settings = jobs_settings(quota_max_jobs_in_flight=10, media_dir=Path(tempfile.mkdtemp(prefix="vg-q-")))
    quota_jobs = await start_jobs_server(settings, database_url=own_database_url, address="127.0.0.1:0")
    try:
        gateway = await start_gateway(jobs_target=f"127.0.0.1:{quota_jobs.port}")
        # No worker: every accepted job stays queued, in flight, for the whole burst.
        gateway.stack.worker.stop()
        client, user = gateway.client, unique_user()
        body = {"userId": user, "prompt": "a lighthouse in a storm", "metadata": TINY}

        answers = await asyncio.gather(*(client.post("/api/v1/jobs", json=body) for _ in range(50)))

        statuses = [a.status_code for a in answers]
        assert (statuses.count(201), statuses.count(429)) == (10, 40), statuses
        refused = [a for a in answers if a.status_code == 429]
        assert {a.headers["Retry-After"] for a in refused} == {"5"}
        assert {(a.json()["limit"], a.json()["max"], a.json()["current"]) for a in refused} == {
            ("jobs_in_flight", 10, 10)
        }
        assert refused[0].json()["retryAfterSeconds"] == 5
        assert refused[0].headers["content-type"] == "application/json"
        listed = (await client.get("/api/v1/jobs", params={"userId": user})).json()
        assert listed["total"] == 10

        # A job that finishes (here: cancelled) frees its unit; another user has quota of their own.
        cancelled = await client.delete(f"/api/v1/jobs/{listed['jobs'][0]['id']}")
        assert cancelled.status_code == 200
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 201
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 429
        assert (await client.post("/api/v1/jobs", json={**body, "userId": unique_user()})).status_code == 201
    finally:
        await quota_jobs.stop(0)


def test_the_openapi_document_describes_the_429_of_create() -> None:
    spec = create_app(GatewaySettings(_env_file=None), redis_url="redis://127.0.0.1:1/0").openapi()

    answer = spec["paths"]["/api/v1/jobs"]["post"]["responses"]["429"]
    assert "jobs_in_flight" in answer["description"] and "video_seconds_per_day" in answer["description"]
    assert "Retry-After" in answer["headers"]
    problem = spec["components"]["schemas"]["RateLimitProblem"]
    assert {"limit", "max", "current", "requested", "retryAfterSeconds"} <= set(problem["properties"])
    assert {example["limit"] for example in problem["examples"]} >= {"jobs_in_flight", "video_seconds_per_day"}
