"""GET /api/v1/jobs/{id}/events: Server-Sent Events of one job, through the real Envoy edge."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
import yaml
from prometheus_client import REGISTRY

from tests.gateway.conftest import Gateway
from tests.support.processes import ROOT
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

# Enough frames that the built-in renderer reports progress several times.
# About 0.4 s of rendering here: a few progress reports, one every WORKER_PROGRESS_INTERVAL (0.1 s).
RENDER = {"durationSeconds": 12, "width": 320, "height": 240, "fps": 24}


@dataclass
class Sse:
    """One server-sent event."""

    id: int
    event: str
    data: dict[str, Any]


def parse(text: str) -> tuple[list[Sse], int]:
    """The events of a whole stream (id 0 for one without), and how many keep-alive comments it held."""
    events, comments = [], 0
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                comments += 1
            elif ": " in line:
                name, value = line.split(": ", 1)
                fields[name] = value
        if "data" in fields:
            events.append(Sse(int(fields.get("id", 0)), fields["event"], json.loads(fields["data"])))
    return events, comments


async def follow(
    gateway: Gateway,
    job_id: str,
    timeout: float = 60,
    headers: dict[str, str] | None = None,
    first: asyncio.Event | None = None,
) -> tuple[int, str, list[Sse]]:
    """Reads the whole stream: status, content type and events; sets first once an event arrived."""
    text = ""
    async with asyncio.timeout(timeout):
        async with gateway.client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers) as answer:
            async for chunk in answer.aiter_text():
                text += chunk
                if first is not None and "data: " in text:
                    first.set()
    return answer.status_code, answer.headers.get("content-type", ""), parse(text)[0]


def unsigned(job: dict[str, Any]) -> dict[str, Any]:
    """The job without its video URL's signature, which two reads a second apart sign anew."""
    if job.get("result"):
        return {**job, "result": {**job["result"], "videoUrl": job["result"]["videoUrl"].split("?")[0]}}
    return job


async def create(gateway: Gateway, metadata: dict[str, Any]) -> dict[str, Any]:
    body = {"userId": "sse-user", "prompt": "p", "metadata": metadata}
    created = await gateway.client.post("/api/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    return dict(created.json())


async def watch_over_edge(gateway: Gateway, job_id: str, first: asyncio.Event | None = None) -> list[jobs_pb2.JobEvent]:
    """Every event of WatchJob through the edge; sets first once an event arrived."""
    events = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gateway.edge_port}") as channel:
        stream = jobs_pb2_grpc.JobServiceStub(channel).WatchJob(jobs_pb2.WatchJobRequest(id=job_id))
        async for event in stream:
            if event.type != "job.keepalive":
                events.append(event)
                if first is not None:
                    first.set()
    return events


async def occupy_the_worker(gateway: Gateway, gate: Path) -> None:
    """Both worker slots hold a job until gate exists, so that the next job stays queued."""
    blockers = [
        await create(gateway, {"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}}) for _ in range(2)
    ]
    async with asyncio.timeout(30):
        for blocker in blockers:
            while (await gateway.client.get(f"/api/v1/jobs/{blocker['id']}")).json()["status"] != "processing":
                await asyncio.sleep(0.05)


@pytest.fixture(autouse=True)
async def _no_watcher_outlives_its_test() -> AsyncIterator[None]:
    """The module's tests share a stack and count its watchers: after each test, waits until the
    edge, the gateway and WatchJob have let go of the test's streams, as a stopped stack would."""
    yield
    async with asyncio.timeout(10):
        while REGISTRY.get_sample_value("job_watchers"):
            await asyncio.sleep(0.05)


async def test_sse_and_watchjob_clients_see_queued_processing_rising_progress_completed(
    gateway: Gateway, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    await occupy_the_worker(gateway, gate)
    job = await create(gateway, RENDER)
    sse_first, grpc_first = asyncio.Event(), asyncio.Event()
    sse = asyncio.create_task(follow(gateway, job["id"], first=sse_first))
    over_grpc = asyncio.create_task(watch_over_edge(gateway, job["id"], first=grpc_first))
    # Both clients hold the queued job's first event before a worker may take it (a watcher is
    # counted before its snapshot is read, so the count alone would race the worker).
    async with asyncio.timeout(10):
        await asyncio.gather(sse_first.wait(), grpc_first.wait())

    gate.touch()
    (status, content_type, events), grpc_events = await sse, await over_grpc

    assert (status, content_type.split(";")[0]) == (200, "text/event-stream")
    for types, percents, final_status in [
        ([e.event for e in events], [e.data["progressPercent"] for e in events], events[-1].data["status"]),
        ([e.type for e in grpc_events], [e.job.progress_percent for e in grpc_events], grpc_events[-1].job.status),
    ]:
        assert types[:2] == ["job.queued", "job.processing"]
        assert types[-1] == "job.completed" and types.count("job.completed") == 1
        assert types.count("job.progress") >= 2
        assert percents == sorted(percents) and percents[-1] == 100
        assert final_status in ("completed", jobs_pb2.JOB_STATUS_COMPLETED)
    stages = [e.data["progressStage"] for e in events if e.event == "job.progress"]
    # `storing` is reported only when the store outlasts a progress interval (a quick one is
    # told by the completion itself).
    assert "rendering" in stages and set(stages) <= {"starting", "rendering", "storing"}
    ids = [e.id for e in events]
    assert ids == sorted(set(ids)) and ids[-1] == grpc_events[-1].event_id
    assert unsigned(events[-1].data) == unsigned((await gateway.client.get(f"/api/v1/jobs/{job['id']}")).json())


async def test_a_late_client_gets_the_final_state_at_once(gateway: Gateway) -> None:
    job = await create(gateway, {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4})
    _, _, live = await follow(gateway, job["id"])

    status, _, late = await follow(gateway, job["id"], timeout=5)

    assert status == 200
    assert [(e.id, e.event, e.data["status"]) for e in late] == [(live[-1].id, "job.completed", "completed")]


async def test_last_event_id_skips_what_was_seen_and_a_seen_end_is_204(gateway: Gateway) -> None:
    job = await create(gateway, {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4})
    _, _, seen = await follow(gateway, job["id"])

    _, _, resumed = await follow(gateway, job["id"], timeout=5, headers={"Last-Event-ID": str(seen[-2].id)})
    ended = await gateway.client.get(f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": str(seen[-1].id)})

    assert [(e.id, e.event) for e in resumed] == [(seen[-1].id, "job.completed")]
    assert (ended.status_code, ended.content) == (204, b"")


async def test_a_resumed_stream_of_a_running_job_starts_after_the_last_event(gateway: Gateway, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = await create(gateway, {"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}})
    async with asyncio.timeout(30):
        while (current := (await gateway.client.get(f"/api/v1/jobs/{job['id']}")).json())["status"] != "processing":
            await asyncio.sleep(0.1)
    async with gateway.client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as answer:
        lines = answer.aiter_lines()
        async with asyncio.timeout(10):
            while not (line := await anext(lines)).startswith("id: "):
                pass
        last_id = int(line.removeprefix("id: "))

    gate.touch()
    _, _, rest = await follow(gateway, job["id"], headers={"Last-Event-ID": str(last_id)})

    assert current["status"] == "processing" and rest and rest[0].id > last_id
    assert rest[-1].event == "job.completed"


async def test_many_sse_clients_of_a_job_share_one_redis_subscription(
    gateway: Gateway, tmp_path: Path, redis_url: str
) -> None:
    gate = tmp_path / "gate"
    job = await create(gateway, {"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}})
    streams = [gateway.client.stream("GET", f"/api/v1/jobs/{job['id']}/events") for _ in range(8)]
    answers = [await stream.__aenter__() for stream in streams]
    redis = aioredis.Redis.from_url(redis_url)
    try:
        assert all(answer.status_code == 200 for answer in answers)
        channels = await redis.pubsub_channels(f"*jobs:events:{job['id']}")
        assert len(channels) == 1
        assert dict(await redis.pubsub_numsub(channels[0]))[channels[0]] == 1
    finally:
        gate.touch()
        for stream in streams:
            await stream.__aexit__(None, None, None)
        await redis.aclose()


async def test_a_client_that_goes_away_frees_its_watcher(gateway: Gateway, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    job = await create(gateway, {"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}})
    before = REGISTRY.get_sample_value("job_watchers") or 0
    try:
        async with gateway.client.stream("GET", f"/api/v1/jobs/{job['id']}/events") as answer:
            assert answer.status_code == 200
            assert REGISTRY.get_sample_value("job_watchers") == before + 1

        async with asyncio.timeout(10):  # the edge, the gateway and WatchJob let go in turn
            while REGISTRY.get_sample_value("job_watchers") != before:
                await asyncio.sleep(0.05)
    finally:
        gate.touch()


async def test_unknown_ids_are_404_and_a_bad_last_event_id_is_422(gateway: Gateway) -> None:
    job = await create(gateway, {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4})

    unknown = await gateway.client.get(f"/api/v1/jobs/c{'0' * 24}/events")
    malformed = await gateway.client.get("/api/v1/jobs/not-an-id/events")
    bad = await gateway.client.get(f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": "-1"})

    assert (unknown.status_code, malformed.status_code) == (404, 404)
    assert unknown.headers["content-type"] == "application/json"
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["header", "Last-Event-ID"]


async def test_the_openapi_document_describes_the_event_stream(gateway: Gateway) -> None:
    document = (await gateway.client.get("/openapi.json")).json()

    operation = document["paths"]["/api/v1/jobs/{job_id}/events"]["get"]

    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"200", "204", "404", "422", "429", "503"} <= set(operation["responses"])
    assert any(p["name"] == "Last-Event-ID" and p["in"] == "header" for p in operation["parameters"])
    job = document["components"]["schemas"]["Job"]["properties"]
    assert {"progressPercent", "progressStage"} <= set(job)


def test_the_edge_neither_times_out_nor_retries_the_live_streams() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "envoy" / "envoy.yaml").read_text())
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = manager["route_config"]["virtual_hosts"][0]["routes"]

    def route_of(path: str, *, grpc_call: bool) -> dict[str, Any]:
        for route in routes:
            match = route["match"]
            if grpc_call != ("grpc" in match) or "headers" in match:
                continue
            if match.get("path") == path or path.startswith(match.get("prefix", "\0")):
                return dict(route["route"])
            if "safe_regex" in match and re.fullmatch(match["safe_regex"]["regex"], path):
                return dict(route["route"])
        raise AssertionError(f"no route for {path}")

    rest = [("/api/v1/jobs/cabc/events", False), ("/api/v1/events", False)]
    for path, grpc_call in [*rest, ("/videogen.v1.JobService/WatchJob", True)]:
        route = route_of(path, grpc_call=grpc_call)
        assert (route["timeout"], "retry_policy" in route) == ("0s", False)
        assert 30 <= int(route["idle_timeout"].removesuffix("s")) <= 600
    assert route_of("/api/v1/jobs/cabc", grpc_call=False)["timeout"] != "0s"


async def follow_many(gateway: Gateway, ids: list[str], first: asyncio.Event | None = None) -> tuple[int, list[Sse]]:
    """Reads a whole stream of several jobs: its status and events (their ids are 0: they carry none)."""
    text = ""
    async with asyncio.timeout(60):
        async with gateway.client.stream("GET", "/api/v1/events", params={"jobId": ids}) as answer:
            async for chunk in answer.aiter_text():
                text += chunk
                if first is not None and "data: " in text:
                    first.set()
    assert "\nid: " not in text and not text.startswith("id: ")
    return answer.status_code, parse(text)[0]


async def test_one_stream_follows_more_jobs_than_a_browser_has_connections(gateway: Gateway, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    await occupy_the_worker(gateway, gate)
    jobs = [await create(gateway, {"durationSeconds": 2, "width": 64, "height": 64, "fps": 24}) for _ in range(8)]
    unknown = f"c{'0' * 24}"
    first = asyncio.Event()
    stream = asyncio.create_task(follow_many(gateway, [j["id"] for j in jobs] + [unknown], first=first))
    async with asyncio.timeout(10):
        await first.wait()
    assert REGISTRY.get_sample_value("job_watchers") == 8  # one WatchJob a queued job, none for the unknown

    gate.touch()
    status, events = await stream

    assert status == 200
    assert [e.data for e in events if e.event == "job.missing"] == [{"id": unknown}]
    opening = [e.data["id"] for e in events[: len(jobs)]]
    assert opening == [j["id"] for j in jobs]  # each job's current state first, in the order asked
    for job in jobs:
        mine = [e for e in events if e.data["id"] == job["id"]]
        percents = [e.data["progressPercent"] for e in mine]
        assert mine[0].event == "job.queued" and mine[-1].event == "job.completed"
        assert [e.event for e in mine].count("job.completed") == 1 and percents == sorted(percents)
        assert unsigned(mine[-1].data) == unsigned((await gateway.client.get(f"/api/v1/jobs/{job['id']}")).json())


async def test_a_stream_of_ended_jobs_gives_their_states_and_ends(gateway: Gateway) -> None:
    job = await create(gateway, {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4})
    await follow(gateway, job["id"])
    cancelled = await create(gateway, {"provider": "scripted", "modelInput": {"script": {"gate": "/nonexistent"}}})
    await gateway.client.delete(f"/api/v1/jobs/{cancelled['id']}")

    status, events = await follow_many(gateway, [job["id"], cancelled["id"], job["id"]])

    assert status == 200
    assert [(e.event, e.data["id"]) for e in events] == [
        ("job.completed", job["id"]),
        ("job.cancelled", cancelled["id"]),
    ]


async def test_a_client_that_leaves_a_stream_of_several_frees_every_watcher(gateway: Gateway, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = {"provider": "scripted", "modelInput": {"script": {"gate": str(gate)}}}
    jobs = [await create(gateway, script) for _ in range(3)]
    before = REGISTRY.get_sample_value("job_watchers") or 0
    try:
        params = {"jobId": [j["id"] for j in jobs]}
        async with gateway.client.stream("GET", "/api/v1/events", params=params) as answer:
            assert answer.status_code == 200
            assert REGISTRY.get_sample_value("job_watchers") == before + 3
        async with asyncio.timeout(10):
            while REGISTRY.get_sample_value("job_watchers") != before:
                await asyncio.sleep(0.05)
    finally:
        gate.touch()


@pytest.mark.parametrize(
    ("ids", "loc"),
    [
        ([], ["query", "jobId"]),
        ([f"c{i:024d}" for i in range(51)], ["query", "jobId"]),
        ([f"c{'0' * 24}", "Not-An-Id"], ["query", "jobId", 1]),
        ([""], ["query", "jobId", 0]),
    ],
)
async def test_a_stream_of_several_refuses_what_cannot_name_jobs(
    gateway: Gateway, ids: list[str], loc: list[Any]
) -> None:
    answer = await gateway.client.get("/api/v1/events", params={"jobId": ids})

    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == loc
    assert REGISTRY.get_sample_value("job_watchers") in (None, 0)


async def test_the_openapi_document_describes_the_stream_of_several_jobs(gateway: Gateway) -> None:
    document = (await gateway.client.get("/openapi.json")).json()

    operation = document["paths"]["/api/v1/events"]["get"]

    assert operation["operationId"] == "jobsEvents"
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert {"200", "401", "422", "429", "503"} <= set(operation["responses"])
    assert [(p["name"], p["in"]) for p in operation["parameters"]] == [("jobId", "query")]
