"""ProviderService and the internal ProviderRoutingService over gRPC: protobuf in, use cases,
protobuf out."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.core.auth import require_admin
from services.core.errors import InvalidArgument
from services.core.generators.capabilities import DEFAULT_SECONDS, RATIO, VideoRequest, ratio_value
from services.core.job.rules import PROVIDER_NAME
from services.core.provider_health import Circuit, Health, HealthState, Outcome, circuit_of
from services.providers.service import ProvidersService
from videogen.v1 import providers_pb2, providers_pb2_grpc, routing_pb2, routing_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]
_HEALTH = {
    Health.HEALTHY: providers_pb2.PROVIDER_HEALTH_HEALTHY,
    Health.DEGRADED: providers_pb2.PROVIDER_HEALTH_DEGRADED,
    Health.UNHEALTHY: providers_pb2.PROVIDER_HEALTH_UNHEALTHY,
}
TIMEOUT_DEFAULT, TIMEOUT_MAX = 30.0, 300.0
# The most outcomes one SyncRouting may carry (a worker's batch is far smaller).
SYNC_OUTCOMES_MAX = 1000


def _name(value: str, field: str) -> str:
    if not PROVIDER_NAME.fullmatch(value):
        raise InvalidArgument(field, 'must be a provider name such as "local"')
    return value


_CIRCUIT = {
    Circuit.CLOSED: providers_pb2.CIRCUIT_STATE_CLOSED,
    Circuit.OPEN: providers_pb2.CIRCUIT_STATE_OPEN,
    Circuit.HALF_OPEN: providers_pb2.CIRCUIT_STATE_HALF_OPEN,
}


def _timestamp(moment: datetime | None) -> Timestamp | None:
    if moment is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class ProviderServicer(providers_pb2_grpc.ProviderServiceServicer):
    """Translates ProviderService calls into ProvidersService use cases (testing is the admin's)."""

    def __init__(self, service: ProvidersService) -> None:
        self._service = service

    async def GetProvidersStatus(
        self, request: providers_pb2.GetProvidersStatusRequest, context: Context
    ) -> providers_pb2.GetProvidersStatusResponse:
        views = await self._service.status()
        now = datetime.now(UTC)
        return providers_pb2.GetProvidersStatusResponse(
            providers=[
                providers_pb2.ProviderStatus(
                    provider=view.config.name,
                    status=_HEALTH[view.state.status],
                    last_checked_at=_timestamp(view.state.last_checked_at),
                    consecutive_failures=view.state.consecutive_failures,
                    avg_response_time_ms=view.state.avg_response_time_ms,
                    cost_per_request=view.config.cost_per_request,
                    models=view.config.models,
                    kind=view.config.kind,
                    circuit=_CIRCUIT[circuit_of(view.state, now)],
                    circuit_open_until=_timestamp(view.state.circuit_open_until),
                )
                for view in views
            ]
        )

    async def TestProvider(
        self, request: providers_pb2.TestProviderRequest, context: Context
    ) -> providers_pb2.TestProviderResponse:
        require_admin("testing a provider")
        name = _name(request.provider, "provider")
        timeout = request.timeout_seconds if request.HasField("timeout_seconds") else TIMEOUT_DEFAULT
        if not (math.isfinite(timeout) and 1 <= timeout <= TIMEOUT_MAX):
            raise InvalidArgument("timeout_seconds", f"must be between 1 and {TIMEOUT_MAX:g}")
        self._service.config(name)
        result = await self._service.probe(name, timeout)
        return providers_pb2.TestProviderResponse(
            provider=name,
            success=result.success,
            status=_HEALTH[result.state.status],
            response_time_ms=result.response_time_ms,
            error=result.error,
        )


class ProviderRoutingServicer(routing_pb2_grpc.ProviderRoutingServiceServicer):
    """Translates the workers' routing calls into ProvidersService use cases (internal)."""

    def __init__(self, service: ProvidersService) -> None:
        self._service = service

    async def SelectProvider(
        self, request: routing_pb2.SelectProviderRequest, context: Context
    ) -> routing_pb2.SelectProviderResponse:
        requested = (
            _name(request.requested_provider, "requested_provider") if request.HasField("requested_provider") else None
        )
        model = request.requested_model if request.HasField("requested_model") else ""
        if len(model) > 128:
            raise InvalidArgument("requested_model", "must be at most 128 characters")
        exclude = {_name(name, "exclude") for name in request.exclude}
        choice = await self._service.select(
            requested=requested, model=model, exclude=exclude, request=_video_request(request)
        )
        return routing_pb2.SelectProviderResponse(
            provider=choice.config.name,
            kind=choice.config.kind,
            model=choice.model,
            timeout_seconds=choice.config.timeout_seconds,
            cost_per_request=choice.config.cost_per_request,
            cost_usd=choice.cost_usd,
        )

    async def ReportOutcome(
        self, request: routing_pb2.ReportOutcomeRequest, context: Context
    ) -> routing_pb2.ReportOutcomeResponse:
        name, outcome = _outcome(request, "")
        state = await self._service.report(name, outcome)
        return routing_pb2.ReportOutcomeResponse(status=_HEALTH[state.status])

    async def SyncRouting(
        self, request: routing_pb2.SyncRoutingRequest, context: Context
    ) -> routing_pb2.SyncRoutingResponse:
        if len(request.outcomes) > SYNC_OUTCOMES_MAX:
            raise InvalidArgument("outcomes", f"must be at most {SYNC_OUTCOMES_MAX}")
        outcomes = [_outcome(item, f"outcomes[{i}].") for i, item in enumerate(request.outcomes)]
        for i, (name, _) in enumerate(outcomes):
            if not self._service.configured(name):  # refused before anything is applied
                raise InvalidArgument(f"outcomes[{i}].provider", f"{name!r} is not a configured provider")
        views = await self._service.sync(outcomes)
        now = datetime.now(UTC)
        return routing_pb2.SyncRoutingResponse(
            providers=[
                routing_pb2.RoutingHealth(
                    provider=view.config.name,
                    status=_HEALTH[view.state.status],
                    consecutive_failures=view.state.consecutive_failures,
                    avg_response_time_ms=view.state.avg_response_time_ms,
                    circuit_open_seconds=_open_seconds(view.state, now),
                    last_error=view.state.last_error,
                )
                for view in views
            ]
        )


def _outcome(request: routing_pb2.ReportOutcomeRequest, prefix: str) -> tuple[str, Outcome]:
    """The provider and outcome of one report, validated (prefix: where it sits in the request)."""
    name = _name(request.provider, f"{prefix}provider")
    if not (math.isfinite(request.latency_ms) and request.latency_ms >= 0):
        raise InvalidArgument(f"{prefix}latency_ms", "must be a non-negative number")
    return name, Outcome(
        success=request.success,
        latency_ms=request.latency_ms if request.success else None,
        error=request.error[:4000],
        rate_limited=request.rate_limited,
    )


def _open_seconds(state: HealthState, now: datetime) -> float:
    """Seconds the provider's circuit stays open from now; 0 when closed."""
    if state.circuit_open_until is None:
        return 0.0
    return max(0.0, (state.circuit_open_until - now).total_seconds())


def _video_request(request: routing_pb2.SelectProviderRequest) -> VideoRequest:
    """What the job asks for, from the request's fields (the defaults of what it leaves out)."""
    seconds = DEFAULT_SECONDS
    if request.HasField("duration_seconds"):
        seconds = request.duration_seconds
        if not (math.isfinite(seconds) and 0 < seconds <= 3600):
            raise InvalidArgument("duration_seconds", "must be between 0 and 3600")
    ratio, label = None, ""
    if request.HasField("aspect_ratio"):
        label = request.aspect_ratio
        if not RATIO.fullmatch(label):
            raise InvalidArgument("aspect_ratio", "must be W:H such as 16:9")
        ratio = ratio_value(label)
    return VideoRequest(
        duration_seconds=seconds, aspect_ratio=ratio, aspect_label=label, image_input=request.image_input
    )
