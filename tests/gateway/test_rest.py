"""The REST contract through the gateway: walk-through, status codes, validation, media, ops."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import grpc
import pytest

from services.core.job.public import job_from_proto
from services.jobs.server import start_jobs_server
from tests.conftest import jobs_settings
from tests.gateway.conftest import ADMIN_KEY, Gateway, GatewayFactory, production
from tests.support.factories import bare_json, unique_user
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}
JOB_FIELDS = {
    "id", "userId", "status", "prompt", "metadata", "result", "retryCount", "maxRetries", "usedProvider",
    "usedModel", "generationTimeMs", "errorMessage", "createdAt", "updatedAt", "startedAt", "completedAt",
    "progressPercent", "progressStage",
    "webhookUrl", "webhookEvents", "costUsd",
}  # fmt: skip


async def wait_status(gateway: Gateway, job_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while (job := (await gateway.client.get(f"/api/v1/jobs/{job_id}")).json())["status"] != status:
            await asyncio.sleep(0.1)
    return dict(job)


async def test_the_seed_walk_through(gateway: Gateway) -> None:
    client, user = gateway.client, unique_user()
    assert (await client.get("/health")).json() == {"status": "alive"}

    created = await client.post(
        "/api/v1/jobs",
        json={"userId": user, "prompt": "A sunset over the ocean", "metadata": {"priority": "high", **TINY}},
    )
    assert created.status_code == 201, created.text
    job = created.json()
    assert set(job) == JOB_FIELDS
    assert (job["status"], job["maxRetries"], job["retryCount"], job["result"]) == ("queued", 3, 0, None)
    assert datetime.fromisoformat(job["createdAt"]).utcoffset() == timedelta(0)

    done = await wait_status(gateway, job["id"], "completed")
    assert done["usedProvider"] == "local"
    assert set(done["result"]) == {
        "videoUrl", "contentType", "durationSeconds", "width", "height", "fps", "sizeBytes", "codec"
    }  # fmt: skip
    assert (done["result"]["codec"], done["costUsd"]) == ("h264", 0.0)
    [attempt] = (await client.get(f"/api/v1/jobs/{job['id']}/attempts")).json()["attempts"]
    assert (attempt["attempt"], attempt["outcome"], attempt["provider"], attempt["error"]) == (
        1,
        "completed",
        "local",
        None,
    )
    assert attempt["workerId"] and attempt["startedAt"] <= attempt["endedAt"] == done["completedAt"]
    assert (await client.get(f"/api/v1/jobs/c{'0' * 24}/attempts")).status_code == 404

    video = await client.get(done["result"]["videoUrl"])
    assert (video.status_code, video.headers["content-type"]) == (200, "video/mp4")
    assert len(video.content) == done["result"]["sizeBytes"]
    part = await client.get(done["result"]["videoUrl"], headers={"Range": "bytes=0-99"})
    assert (part.status_code, len(part.content), part.content) == (206, 100, video.content[:100])

    listed = (await client.get("/api/v1/jobs", params={"userId": user, "status": "completed"})).json()
    assert set(listed) == {"jobs", "total", "skip", "take", "nextCursor"} and listed["take"] == 20
    assert job["id"] in [j["id"] for j in listed["jobs"]]

    providers = await client.get("/api/v1/providers/status")
    local = next(p for p in providers.json()["providers"] if p["provider"] == "local")
    assert set(local) == {"provider", "status", "lastCheckedAt", "consecutiveFailures", "avgResponseTimeMs",
                          "costPerRequest", "models", "circuit", "circuitOpenUntil"}  # fmt: skip
    assert (local["circuit"], local["circuitOpenUntil"]) == ("closed", None)
    tested = await client.post("/api/v1/providers/test", json={"provider": "local", "timeout": 5})
    assert (tested.status_code, tested.json()["success"], tested.json()["status"]) == (200, True, "healthy")

    assert (await client.delete(f"/api/v1/jobs/{job['id']}")).status_code == 204
    assert (await client.get(f"/api/v1/jobs/{job['id']}")).status_code == 404
    assert (await client.get(done["result"]["videoUrl"])).status_code == 404


async def test_deleting_a_queued_job_cancels_it(gateway: Gateway, tmp_path: Any) -> None:
    gate = tmp_path / "gate"
    client = gateway.client
    busy = (await client.post("/api/v1/jobs", json={"userId": "u", "prompt": "p",
            "metadata": {"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}}})).json()  # fmt: skip
    await wait_status(gateway, busy["id"], "processing")

    answer = await client.delete(f"/api/v1/jobs/{busy['id']}")

    assert (answer.status_code, answer.json()["status"]) == (200, "cancelled")
    gate.touch()
    assert (await client.get(f"/api/v1/jobs/{busy['id']}")).json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "p"}, "userId"),
        ({"userId": "bad user", "prompt": "p"}, "userId"),
        ({"userId": "u" * 129, "prompt": "p"}, "userId"),
        ({"userId": "u"}, "prompt"),
        ({"userId": "u", "prompt": ""}, "prompt"),
        ({"userId": "u", "prompt": "   "}, "prompt"),
        ({"userId": "u", "prompt": "x" * 4001}, "prompt"),
        ({"userId": "u", "prompt": "p", "metadata": [1]}, "metadata"),
        ({"userId": "u", "prompt": "p", "metadata": {"pad": "x" * 17000}}, "metadata"),
        ({"userId": "u", "prompt": "p", "metadata": {"provider": 5}}, "metadata"),
        ({"userId": "u", "prompt": "p", "maxRetries": 11}, "maxRetries"),
        ({"userId": "u", "prompt": "p", "maxRetries": -1}, "maxRetries"),
        ({"userId": "u", "prompt": "p", "colour": "red"}, "colour"),
    ],
)
async def test_a_bad_job_is_422_naming_the_field(gateway: Gateway, body: dict[str, Any], field: str) -> None:
    answer = await gateway.client.post("/api/v1/jobs", json=body)

    assert answer.status_code == 422, answer.text
    assert field in [str(part) for error in answer.json()["detail"] for part in error["loc"]]


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"{not json", b""])
async def test_a_body_that_is_not_a_json_object_is_422(gateway: Gateway, raw: bytes) -> None:
    answer = await gateway.client.post("/api/v1/jobs", content=raw, headers={"Content-Type": "application/json"})

    assert answer.status_code == 422
    assert "detail" in answer.json()


@pytest.mark.parametrize(
    "params", [{"take": 0}, {"take": 101}, {"skip": -1}, {"status": "sleeping"}, {"userId": "a b"}, {"take": "x"}]
)
async def test_a_bad_list_query_is_422(gateway: Gateway, params: dict[str, Any]) -> None:
    assert (await gateway.client.get("/api/v1/jobs", params=params)).status_code == 422


@pytest.mark.parametrize("path", ["/api/v1/jobs/cnotthereatall0000000000a", "/api/v1/jobs/NOT-AN-ID"])
async def test_unknown_jobs_are_404(gateway: Gateway, path: str) -> None:
    assert (await gateway.client.get(path)).status_code == 404
    assert (await gateway.client.delete(path)).status_code == 404


async def test_unknown_provider_test_is_404_and_bad_timeout_422(gateway: Gateway) -> None:
    client = gateway.client
    assert (await client.post("/api/v1/providers/test", json={"provider": "ghost"})).status_code == 404
    assert (await client.post("/api/v1/providers/test", json={"provider": "local", "timeout": 0})).status_code == 422


async def test_readiness_names_every_component(gateway: Gateway) -> None:
    answer = await gateway.client.get("/health/ready")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert set(body["components"]) == {"database", "redis", "jobs", "providers", "worker"}
    assert all(c["status"] == "up" and c["latencyMs"] >= 0 for c in body["components"].values())


async def test_a_stopped_jobs_service_is_503_and_recovers_without_restart(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway()  # its own: this test stops the jobs service
    client, stack = gateway.client, gateway.stack
    port = stack.server.port
    await stack.server.stop(0)

    down = await client.get("/api/v1/jobs")
    ready = await client.get("/health/ready")

    assert (down.status_code, down.json()["detail"]) == (503, "the jobs service is unavailable, try again later")
    assert ready.status_code == 503 and ready.json()["components"]["jobs"]["status"] == "down"
    restarted = await start_jobs_server(
        jobs_settings(media_dir=stack.media), database_url=str(stack.server.engine.url.render_as_string(False)),
        address=f"127.0.0.1:{port}",
    )  # fmt: skip
    try:
        async with asyncio.timeout(20):
            while (await client.get("/health/ready")).status_code != 200:
                await asyncio.sleep(0.2)
        assert (await client.get("/api/v1/jobs")).status_code == 200
    finally:
        await restarted.stop(0)


async def test_request_id_is_echoed_and_reaches_every_service(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = await gateway.client.post(
        "/api/v1/jobs", json={"userId": "u", "prompt": "p", "metadata": TINY}, headers={"X-Request-ID": "trace-42abc"}
    )
    await wait_status(gateway, answer.json()["id"], "completed")

    assert answer.headers["X-Request-ID"] == "trace-42abc"
    assert "request_id=trace-42abc" in capsys.readouterr().out  # the jobs service, in this process
    assert '"request_id": "trace-42abc"' in gateway.stack.worker.output()
    generated = await gateway.client.get("/health")
    assert re.fullmatch(r"[0-9a-f-]{32,36}", generated.headers["X-Request-ID"])


async def edge_log_lines(gateway: Gateway, request_ids: set[str], timeout: float = 15) -> dict[str, dict[str, Any]]:
    """The edge's access log lines of these requests (Envoy writes its log in batches)."""
    found: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(timeout):
        while set(found) != request_ids:
            for path in gateway.stack.workdir.glob("envoy-*.log"):
                for line in path.read_text(errors="replace").splitlines():
                    if line.startswith("{") and (entry := json.loads(line)).get("request_id") in request_ids:
                        found[entry["request_id"]] = entry
            await asyncio.sleep(0.2)
    return found


async def test_the_edge_logs_every_request_and_the_gateway_only_its_errors(
    gateway: Gateway, capsys: pytest.CaptureFixture[str]
) -> None:
    ok = await gateway.client.get(f"/api/v1/jobs?userId={unique_user()}&take=5", headers={"X-Request-ID": "log-ok-7"})
    missing = await gateway.client.get("/api/v1/jobs/cnotthereatall0000000000b", headers={"X-Request-ID": "log-404-7"})

    assert (ok.status_code, missing.status_code) == (200, 404)
    lines = [line for line in capsys.readouterr().out.splitlines() if "http.request" in line]
    assert any("request_id=log-404-7" in line and "status=404" in line for line in lines)
    assert not any("log-ok-7" in line for line in lines)  # a success is the edge's to log
    edge = await edge_log_lines(gateway, {"log-ok-7", "log-404-7"})
    assert {key: edge["log-ok-7"][key] for key in ("service", "event", "method", "path", "status")} == {
        "service": "edge",
        "event": "http.request",
        "method": "GET",
        "path": "/api/v1/jobs",  # never the query, which may carry a media URL's signature
        "status": 200,
    }
    assert (edge["log-404-7"]["status"], edge["log-404-7"]["upstream"]) == (404, "gateway")
    assert isinstance(edge["log-ok-7"]["ms"], int)


@pytest.mark.parametrize("key", [b"caf\xe9-0123456789abcdef0123456789abcdef", b"tab\tinside", b"k" * 513])
async def test_a_key_no_service_could_be_told_is_401_not_a_server_error(gateway: Gateway, key: bytes) -> None:
    answer = await gateway.client.get("/api/v1/jobs", headers={b"X-API-Key": key})

    assert answer.status_code == 401
    assert answer.json() == {"detail": "X-API-Key must be 1-512 printable ASCII characters"}


async def test_metrics_label_requests_by_route_template(gateway: Gateway) -> None:
    await gateway.client.get("/api/v1/jobs/cnotthereatall0000000000a")

    body = (await gateway.client.get("/metrics")).text

    assert 'api_request_duration_seconds_count{endpoint="/api/v1/jobs/{job_id}",method="GET",status="404"}' in body


async def test_docs_describe_every_endpoint_with_examples(gateway: Gateway) -> None:
    spec = (await gateway.client.get("/openapi.json")).json()

    for path in ("/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/providers/status", "/api/v1/providers/test",
                 "/health", "/health/ready", "/metrics", "/media/{key}"):  # fmt: skip
        assert path in spec["paths"]
    assert spec["components"]["schemas"]["JobCreate"]["examples"]
    assert (await gateway.client.get("/docs")).status_code == 200
    assert (await gateway.client.get("/redoc")).status_code == 200


async def test_production_needs_the_api_key(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(**production())
    client = gateway.client

    assert (await client.get("/api/v1/jobs")).status_code == 401
    assert (await client.get("/api/v1/jobs", headers={"X-API-Key": "wrong"})).status_code == 401
    assert (await client.get("/api/v1/jobs", headers={"X-API-Key": ADMIN_KEY})).status_code == 200
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200


async def test_grpc_get_job_through_the_edge_returns_the_rest_job(gateway: Gateway) -> None:
    user = unique_user()
    created = (await gateway.client.post("/api/v1/jobs", json={"userId": user, "prompt": "p", "metadata": TINY})).json()
    done = await wait_status(gateway, created["id"], "completed")

    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.edge_port}") as channel:
        job = await jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(id=created["id"]))
        listed = await jobs_pb2_grpc.JobServiceStub(channel).ListJobs(jobs_pb2.ListJobsRequest(user_id=user))

    assert bare_json(job_from_proto(job).model_dump(mode="json")) == bare_json(done)
    assert [j.id for j in listed.jobs] == [created["id"]]


async def test_pages_through_the_edge_do_not_overlap(gateway: Gateway) -> None:
    client, user = gateway.client, unique_user()
    ids = [(await client.post("/api/v1/jobs", json={"userId": user, "prompt": f"p{n}",
            "metadata": {"provider": "scripted"}})).json()["id"] for n in range(7)]  # fmt: skip

    pages = [
        (await client.get("/api/v1/jobs", params={"userId": user, "skip": s, "take": 3})).json() for s in (0, 3, 6)
    ]

    seen = [job["id"] for page in pages for job in page["jobs"]]
    assert seen == list(reversed(ids))
    assert [(p["total"], p["skip"], p["take"]) for p in pages] == [(7, 0, 3), (7, 3, 3), (7, 6, 3)]


def test_the_gateway_refuses_to_start_in_production_with_example_secrets(tmp_path: Any) -> None:
    import subprocess
    import sys

    from tests.support.processes import clean_env

    result = subprocess.run(
        [sys.executable, "-m", "services.gateway"],
        cwd=tmp_path,
        env=clean_env(APP_ENV="production", SECRET_KEY="change-me-secret-key", API_KEY="change-me-api-key"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "configuration error: SECRET_KEY" in result.stderr


async def test_a_repeated_post_with_an_idempotency_key_creates_one_job(gateway: Gateway) -> None:
    client = gateway.client
    user = unique_user()
    body = {"userId": user, "prompt": "a lighthouse at dusk", "metadata": TINY}
    headers = {"Idempotency-Key": "checkout-7f3a"}

    first = await client.post("/api/v1/jobs", json=body, headers=headers)
    again = await client.post("/api/v1/jobs", json=body, headers=headers)
    other = await client.post("/api/v1/jobs", json={**body, "prompt": "a different prompt"}, headers=headers)
    bad = await client.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "x" * 256})

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json()["id"] == first.json()["id"]
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409 and "idempotency_key" in other.json()["detail"]
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    listed = (await client.get("/api/v1/jobs", params={"userId": user})).json()
    assert listed["total"] == 1


async def test_a_chunked_body_over_the_limit_is_413_and_one_within_it_is_read(gateway: Gateway) -> None:
    async def chunks(size: int) -> AsyncIterator[bytes]:
        body = json.dumps({"userId": "chunky", "prompt": "p" * 10, "metadata": {"pad": "x" * size}}).encode()
        for start in range(0, len(body), 4096):
            yield body[start : start + 4096]

    headers = {"Content-Type": "application/json"}
    big = await gateway.client.post("/api/v1/jobs", content=chunks(200_000), headers=headers)
    small = await gateway.client.post("/api/v1/jobs", content=chunks(100), headers=headers)

    assert big.status_code == 413 and "at most" in big.json()["detail"]
    assert small.status_code == 201, small.text


async def test_a_job_without_max_retries_gets_the_services_default(start_gateway: GatewayFactory) -> None:
    gateway = await start_gateway(stack_options={"jobs": {"jobs_default_max_retries": 6}})
    body = {"userId": "user-123", "prompt": "A sunset", "metadata": TINY}
    unsaid = await gateway.client.post("/api/v1/jobs", json=body)
    said = await gateway.client.post("/api/v1/jobs", json={**body, "maxRetries": 0})
    assert (unsaid.status_code, unsaid.json()["maxRetries"]) == (201, 6), unsaid.text
    assert (said.status_code, said.json()["maxRetries"]) == (201, 0), said.text
    stored = await gateway.stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=unsaid.json()["id"]))
    assert stored.max_retries == 6
