"""Tracing's switch and its W3C context: off unless OTEL_EXPORTER_OTLP_ENDPOINT is set, a bad
endpoint refused by the settings (which stop the process naming it), and a span that continues
the caller's trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from services.core import tracing
from services.core.settings import CoreSettings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
CALLER = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, into memory, for one test."""
    memory = InMemorySpanExporter()
    tracing.configure_tracing("test", processor=SimpleSpanProcessor(memory))
    yield memory
    tracing.shutdown_tracing()


def test_tracing_is_off_without_an_endpoint() -> None:
    assert tracing.configure_tracing("test", endpoint=None) is False
    assert not tracing.enabled()
    with tracing.server_span("GET /x", CALLER) as span:
        assert span is None
        assert tracing.trace_metadata() == ()


@pytest.mark.parametrize("endpoint", ["collector:4318", "grpc://collector:4317", "http://", "http://c:4318/?q=1"])
def test_an_endpoint_that_is_no_http_url_is_refused_naming_the_variable(endpoint: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CoreSettings(_env_file=None, otel_exporter_otlp_endpoint=endpoint)

    assert refused.value.errors()[0]["loc"] == ("otel_exporter_otlp_endpoint",)


def test_an_endpoint_turns_tracing_on_with_the_otlp_exporter() -> None:
    endpoint = CoreSettings(
        _env_file=None, otel_exporter_otlp_endpoint="http://127.0.0.1:9/"
    ).otel_exporter_otlp_endpoint
    try:
        assert tracing.configure_tracing("test", endpoint=endpoint)
        assert tracing.enabled()
    finally:
        tracing.shutdown_tracing()
    assert not tracing.enabled()


def test_a_server_span_continues_the_callers_trace_and_passes_it_on(exporter: InMemorySpanExporter) -> None:
    with tracing.server_span("GET /x", CALLER, attributes={"url.path": "/x"}):
        with tracing.span("provider local", kind="client", attributes={"videogen.provider": "local"}):
            passed_on = dict(tracing.trace_metadata())
        headers: dict[str, str] = {}
        tracing.inject(headers)

    server, client = sorted(exporter.get_finished_spans(), key=lambda s: s.name)
    assert server.name == "GET /x" and server.kind == SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert dict(client.attributes or {}) == {"videogen.provider": "local"}
    assert passed_on["traceparent"] == f"00-{TRACE_ID}-{format(client.context.span_id, '016x')}-01"
    assert headers["traceparent"].split("-")[1:3] == [TRACE_ID, format(server.context.span_id, "016x")]
    assert server.resource.attributes["service.name"] == "videogen-test"
