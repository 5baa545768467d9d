"""One trace from a REST request to the provider call: through the edge, the gateway, the jobs
service, the Celery message and the worker, with W3C trace context on every hop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.core import tracing
from tests.gateway.conftest import GatewayFactory
from tests.support.otlp import otlp_receiver

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
RETRIED_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "b7ad6b7169203331"
# Long enough for progress reports from the heartbeat thread (WORKER_PROGRESS_INTERVAL is 0.1 s).
RENDER = {"durationSeconds": 3, "width": 320, "height": 240, "fps": 24}


@pytest.fixture
def in_process() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for what runs in the test's process: the gateway, the jobs and
    the providers services."""
    memory = InMemorySpanExporter()
    tracing.configure_tracing("in-process", processor=SimpleSpanProcessor(memory))
    yield memory
    tracing.shutdown_tracing()


def hex_id(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def received(collector: Any, trace_id: str, name: str) -> list[Any]:
    """The spans of that name and trace the collector has received."""
    return [s for s in collector.received() if s.trace_id == trace_id and s.name == name]


async def test_one_trace_follows_a_job_from_the_rest_request_to_the_provider_call(
    start_gateway: GatewayFactory, in_process: InMemorySpanExporter
) -> None:
    with otlp_receiver() as collector:
        # The worker, a process of its own, sends its spans to the collector (batched every 50 ms).
        # Retries at once: the failing job below makes its second attempt 0.05 s after its first.
        options = {"job_retry_backoff_base": 0.05, "job_retry_jitter": False}
        gateway = await start_gateway(
            stack_options={"otel_exporter_otlp_endpoint": collector.url, "otel_bsp_schedule_delay": 50, **options}
        )
        created = await gateway.client.post(
            "/api/v1/jobs",
            json={"userId": "user-traced", "prompt": "a traced fox", "metadata": RENDER},
            headers={"traceparent": f"00-{TRACE_ID}-{CLIENT_SPAN}-01"},
        )
        assert created.status_code == 201, created.text
        job: dict[str, Any] = created.json()
        async with asyncio.timeout(60):
            while job["status"] != "completed":
                await asyncio.sleep(0.1)
                job = (await gateway.client.get(f"/api/v1/jobs/{job['id']}")).json()
            while not {"celery videogen.generate_video", "provider local"} <= {s.name for s in collector.received()}:
                await asyncio.sleep(0.05)
        worker_spans = {s.name: s for s in collector.received() if s.trace_id == TRACE_ID}
        # A job that fails once and is retried: the dispatcher, outside any request, publishes
        # its second message, which goes on in the trace of the request that created the job.
        failing = await gateway.client.post(
            "/api/v1/jobs",
            json={"userId": "user-traced", "prompt": "a failing fox", "maxRetries": 1,
                  "metadata": {"provider": "scripted", "modelInput": {"script": {"fail": "HTTP 503"}}}},
            headers={"traceparent": f"00-{RETRIED_TRACE_ID}-{CLIENT_SPAN}-01"},
        )  # fmt: skip
        async with asyncio.timeout(60):
            while len(consumers := received(collector, RETRIED_TRACE_ID, "celery videogen.generate_video")) < 2:
                await asyncio.sleep(0.05)
        attempts = (await gateway.client.get(f"/api/v1/jobs/{failing.json()['id']}/attempts")).json()["attempts"]

    spans = {s.name: s for s in in_process.get_finished_spans() if hex_id(s.context.trace_id, 32) == TRACE_ID}
    rest = spans["POST /api/v1/jobs"]
    create = spans["videogen.v1.JobService/CreateJob"]
    consumer = worker_spans["celery videogen.generate_video"]
    provider = worker_spans["provider local"]
    start = spans["videogen.v1.JobLifecycleService/StartJob"]
    assert rest.parent is not None and hex_id(rest.parent.span_id, 16) == CLIENT_SPAN
    assert create.parent is not None and create.parent.span_id == rest.context.span_id
    assert consumer.parent_id == hex_id(create.context.span_id, 16), "the Celery message carries the trace"
    assert consumer.service == "videogen-worker"
    assert provider.parent_id == consumer.span_id
    assert start.parent is not None and hex_id(start.parent.span_id, 16) == consumer.span_id
    names = {s.name for s in in_process.get_finished_spans()} | {s.name for s in collector.received()}
    assert not {"grpc.health.v1.Health/Check", "GET /health"} & names, "probes make no traces"
    reports = [s for s in in_process.get_finished_spans() if s.name == "videogen.v1.JobLifecycleService/ReportProgress"]
    assert reports, "the render reported its progress"
    assert all(hex_id(s.context.trace_id, 32) == TRACE_ID for s in reports), "the heartbeat thread keeps the trace"
    [retried_create] = [
        s for s in in_process.get_finished_spans()
        if s.name == "videogen.v1.JobService/CreateJob" and hex_id(s.context.trace_id, 32) == RETRIED_TRACE_ID
    ]  # fmt: skip
    assert [a["outcome"] for a in attempts] == ["retried", "failed"]
    assert {c.parent_id for c in consumers} == {hex_id(retried_create.context.span_id, 16)}, "both attempts, one trace"
