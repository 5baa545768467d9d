"""/api/v1/providers: provider health and on-demand probes through ProviderService."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.core.job import rules
from services.core.job.public import optional_timestamp
from services.gateway.bodies import StrictJsonRoute
from services.gateway.deps import BackendsDep, call
from services.gateway.schemas import JsonNumber, Problem
from videogen.v1 import providers_pb2

# The names of services/core/provider_health.py's Circuit, as the API spells them.
CircuitName = Literal["closed", "open", "half-open"]


class ProviderStatus(BaseModel):
    """Health, latency and cost of one provider."""

    provider: str
    status: str
    lastCheckedAt: datetime | None
    consecutiveFailures: int
    avgResponseTimeMs: float
    costPerRequest: float
    models: list[str]
    circuit: CircuitName = Field(
        description="Closed: routed as its health ranks it. Open: skipped until `circuitOpenUntil`. Half-open: the "
        "cool-down ended without a success since; the next job or probe tries it, last in order."
    )
    circuitOpenUntil: datetime | None = Field(description="When an open circuit turns half-open; null when closed")


class ProvidersStatus(BaseModel):
    """Every configured provider."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "providers": [
                        {
                            "provider": "local",
                            "status": "healthy",
                            "lastCheckedAt": "2026-11-26T10:00:00+00:00",
                            "consecutiveFailures": 0,
                            "avgResponseTimeMs": 1.2,
                            "costPerRequest": 0.0,
                            "models": ["local-pyav-h264-v1"],
                            "circuit": "closed",
                            "circuitOpenUntil": None,
                        }
                    ]
                }
            ]
        }
    )

    providers: list[ProviderStatus]


class ProviderTest(BaseModel):
    """Probe one provider now."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"provider": "local", "timeout": 30}]})

    provider: Annotated[str, Field(pattern=rules.PROVIDER_NAME.pattern, description="A provider name such as `local`")]
    timeout: Annotated[float, Field(ge=1, le=300), JsonNumber] = 30


class ProviderTestResult(BaseModel):
    """What the probe showed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"provider": "local", "success": True, "status": "healthy", "responseTimeMs": 1.4, "error": None}
            ]
        }
    )

    provider: str
    success: bool
    status: str
    responseTimeMs: float
    error: str | None


def health_name(value: int) -> str:
    """healthy | degraded | unhealthy."""
    return (
        providers_pb2.ProviderHealth.Name(providers_pb2.ProviderHealth.ValueType(value))
        .removeprefix("PROVIDER_HEALTH_")
        .lower()
    )


def provider_from_proto(status: providers_pb2.ProviderStatus) -> ProviderStatus:
    """The REST form of a provider's status."""
    return ProviderStatus(
        provider=status.provider,
        status=health_name(status.status),
        lastCheckedAt=optional_timestamp(status, "last_checked_at"),
        consecutiveFailures=status.consecutive_failures,
        avgResponseTimeMs=status.avg_response_time_ms,
        costPerRequest=status.cost_per_request,
        models=list(status.models),
        circuit=circuit_name(status.circuit),
        circuitOpenUntil=optional_timestamp(status, "circuit_open_until"),
    )


def circuit_name(value: int) -> CircuitName:
    """closed | open | half-open (closed for a service that does not say)."""
    if value == providers_pb2.CIRCUIT_STATE_OPEN:
        return "open"
    if value == providers_pb2.CIRCUIT_STATE_HALF_OPEN:
        return "half-open"
    return "closed"


router = APIRouter(prefix="/api/v1/providers", tags=["providers"], route_class=StrictJsonRoute)


@router.get("/status", response_model=ProvidersStatus, responses={503: {"model": Problem}})
async def providers_status(backends: BackendsDep) -> ProvidersStatus:
    """Health, latency and cost of every configured provider."""
    reply = await call(
        backends.providers.GetProvidersStatus,
        providers_pb2.GetProvidersStatusRequest(),
        backends=backends,
        service="providers",
    )
    return ProvidersStatus(providers=[provider_from_proto(p) for p in reply.providers])


@router.post(
    "/test",
    response_model=ProviderTestResult,
    responses={404: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}},
)
async def test_provider(body: ProviderTest, backends: BackendsDep) -> ProviderTestResult:
    """Probes the provider now, within `timeout` seconds, and records the outcome."""
    request = providers_pb2.TestProviderRequest(provider=body.provider, timeout_seconds=body.timeout)
    reply = await call(
        backends.providers.TestProvider, request, backends=backends, service="providers", timeout=body.timeout + 5
    )
    return ProviderTestResult(
        provider=reply.provider,
        success=reply.success,
        status=health_name(reply.status),
        responseTimeMs=reply.response_time_ms,
        error=reply.error or None,
    )
