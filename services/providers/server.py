"""Wires the providers service: registry, database, probes, gRPC server and health."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from services.core import db
from services.core.generators.kinds import build_providers
from services.core.generators.registry import RegistryConfig
from services.core.grpc_server import ServiceBinding, start_grpc_app
from services.core.logging import get_logger
from services.core.provider_health import HealthPolicy
from services.core.runtime import Background, DatabaseService, database_health
from services.core.stored_keys import keyed_guard
from services.providers.service import ProvidersService
from services.providers.servicer import ProviderRoutingServicer, ProviderServicer
from services.providers.settings import ProvidersSettings
from videogen.v1 import providers_pb2, providers_pb2_grpc, routing_pb2, routing_pb2_grpc

log = get_logger(__name__)
SERVICE = providers_pb2.DESCRIPTOR.services_by_name["ProviderService"]
ROUTING_SERVICE = routing_pb2.DESCRIPTOR.services_by_name["ProviderRoutingService"]
SERVICE_NAME = SERVICE.full_name


@dataclass
class ProvidersServer(DatabaseService):
    """A running providers service, with its use cases at hand for tests and tools."""

    service: ProvidersService | None = None


async def probe_forever(service: ProvidersService, *, interval: float, timeout: float) -> None:
    """Probes every provider every interval seconds; the database down only delays it."""
    registered = False
    while True:
        try:
            if not registered:
                await service.register()
                registered = True
            await service.probe_all(timeout)
        except Exception as exc:
            if not db.is_unavailable(exc):
                log.exception("providers.probe_round_failed")
        await asyncio.sleep(interval)


async def start_providers_server(
    settings: ProvidersSettings, *, database_url: str, address: str, registry: RegistryConfig, probing: bool = True
) -> ProvidersServer:
    """Starts ProviderService on address; it reports SERVING while the database answers.

    Without probing, health changes only by reported outcomes and TestProvider: what a test
    of those rules needs, since a probe round could undo the state it sets up."""
    engine = db.create_engine(settings, database_url)
    policy = HealthPolicy(
        unhealthy_after=settings.provider_unhealthy_after,
        degraded_latency_ms=settings.provider_degraded_latency_ms,
        cooldown_seconds=settings.provider_cooldown_seconds,
        alpha=settings.provider_latency_alpha,
    )
    sessions = db.create_sessions(engine)
    service = ProvidersService(sessions, registry, build_providers(registry), policy)
    with contextlib.suppress(Exception):
        await service.register()
    bindings = [
        ServiceBinding(ProviderServicer(service), providers_pb2_grpc.add_ProviderServiceServicer_to_server, SERVICE),
        ServiceBinding(
            ProviderRoutingServicer(service),
            routing_pb2_grpc.add_ProviderRoutingServiceServicer_to_server,
            ROUTING_SERVICE,
            internal=True,
        ),
    ]
    guard = keyed_guard(settings, internal=frozenset({ROUTING_SERVICE.full_name}), user_keys=sessions)
    app = await start_grpc_app(
        bindings,
        address=address,
        max_message_bytes=settings.grpc_max_message_bytes,
        guard=guard,
        outage=db.is_unavailable,
    )
    loops = [database_health(settings, app, engine)]
    if probing:
        interval, timeout = settings.provider_probe_interval, settings.provider_probe_timeout
        loops.append(
            Background(loops=(("probes", lambda: probe_forever(service, interval=interval, timeout=timeout)),))
        )
    started = DatabaseService.serving(app, engine, loops)
    return ProvidersServer(app=app, engine=engine, tasks=started.tasks, service=service)
