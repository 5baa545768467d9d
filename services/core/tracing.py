"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

One trace follows a job from the REST request through the gateway, the jobs service, the Celery
message and the worker to the provider call: W3C trace context (`traceparent`) travels in gRPC
metadata and in the Celery message's headers. Off, nothing is extracted, started or injected,
and this module imports nothing of OpenTelemetry (redis-py and FastAPI import parts of it
themselves, since it is installed): the request path pays one boolean test per hop.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Span

# OpenTelemetry's span kinds, by name (SpanKind.SERVER is "server").
Kind = Literal["server", "client", "consumer", "internal"]
_TRACER_NAME = "videogen"
_state: dict[str, TracerProvider | None] = {"provider": None}


def enabled() -> bool:
    """Whether this process records spans."""
    return _state["provider"] is not None


def configure_tracing(
    service_name: str, *, endpoint: str | None = None, processor: SpanProcessor | None = None
) -> bool:
    """Turns tracing on for this process when an endpoint is given (OTEL_EXPORTER_OTLP_ENDPOINT,
    validated by the settings: spans batched to that OTLP/HTTP collector's /v1/traces; the SDK's
    OTEL_BSP_* and OTEL_EXPORTER_OTLP_HEADERS apply), or a processor (tests: the SDK's in-memory
    exporter). Spans name their service `videogen-<service_name>`. Whether tracing is on."""
    if processor is None and not endpoint:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    if processor is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # As the OTLP specification says of the generic variable: the traces path is appended.
        processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{str(endpoint).rstrip('/')}/v1/traces"))
    # Each process names itself: make run's processes share one environment.
    provider = TracerProvider(resource=Resource.create({"service.name": f"videogen-{service_name}"}))
    provider.add_span_processor(processor)
    _state["provider"] = provider
    return True


def shutdown_tracing() -> None:
    """Sends the spans still batched, and turns tracing off."""
    provider = _state["provider"]
    _state["provider"] = None
    if provider is not None:
        provider.shutdown()


def server_span(
    name: str,
    carrier: Mapping[str, str] | None,
    *,
    kind: Kind = "server",
    attributes: Mapping[str, Any] | None = None,
) -> AbstractContextManager[Span | None]:
    """A SERVER span for one incoming request, child of the caller's context in carrier
    (headers or metadata holding `traceparent`); None while tracing is off."""
    return _span(name, carrier=carrier or {}, kind=kind, attributes=attributes)


def span(
    name: str, *, kind: Kind = "internal", attributes: Mapping[str, Any] | None = None
) -> AbstractContextManager[Span | None]:
    """A span in the current context (a provider call: "client"); None while tracing is off."""
    return _span(name, carrier=None, kind=kind, attributes=attributes)


@contextmanager
def _span(
    name: str, *, carrier: Mapping[str, str] | None, kind: Kind, attributes: Mapping[str, Any] | None
) -> Iterator[Span | None]:
    """A current span, under the context carrier holds (None: the current context), or None
    while tracing is off."""
    provider = _state["provider"]
    if provider is None:
        yield None
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent: Context | None = None if carrier is None else propagate.extract(carrier)
    tracer = provider.get_tracer(_TRACER_NAME)
    with tracer.start_as_current_span(
        name, context=parent, kind=SpanKind[kind.upper()], attributes=attributes
    ) as current:
        yield current


def inject(carrier: MutableMapping[str, Any], *, parent: str | None = None) -> None:
    """Adds the current trace context (`traceparent`, `tracestate`) to carrier, when tracing is on;
    with parent (a traceparent kept from an earlier request), that context instead."""
    if enabled():
        from opentelemetry import propagate

        propagate.inject(carrier, context=None if parent is None else propagate.extract({"traceparent": parent}))


def current_traceparent() -> str | None:
    """The current context's traceparent, to keep with what outlives the request (a job); None
    while tracing is off or outside a trace."""
    if not enabled():
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent")


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """The current trace context as gRPC metadata pairs; none while tracing is off."""
    if not enabled():
        return ()
    carrier: dict[str, str] = {}
    inject(carrier)
    return tuple(carrier.items())


def metadata_carrier(metadata: Iterable[tuple[str, Any]] | None) -> dict[str, str]:
    """gRPC invocation metadata as a carrier for extract()."""
    return {key: value for key, value in metadata or () if isinstance(value, str)}
