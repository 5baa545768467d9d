"""/api/v1/providers: provider health and on-demand probes through ProviderService."""

from __future__ import annotations

from fastapi import APIRouter

from services.gateway.bodies import StrictJsonRoute
from services.gateway.deps import BackendsDep, call
from services.gateway.schemas import (
    Problem,
    ProvidersStatus,
    ProviderTest,
    ProviderTestResult,
    health_name,
    provider_from_proto,
)
from videogen.v1 import providers_pb2

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
