"""`python -m services.providers`: the providers service on PROVIDERS_GRPC_PORT, metrics on 9102."""

from __future__ import annotations

import asyncio
import sys

from services.core import migrate
from services.core.embedded import resolve_database_url
from services.core.grpc_server import wait_for_stop_signal
from services.core.logging import configure_logging, get_logger
from services.core.metrics import start_metrics_server
from services.core.providers.registry import RegistryConfig, RegistryError, load_registry
from services.core.settings import load_settings
from services.providers.server import start_providers_server
from services.providers.settings import ProvidersSettings

log = get_logger("services.providers")


async def serve(settings: ProvidersSettings, database_url: str, registry: RegistryConfig) -> None:
    """Runs until SIGTERM or SIGINT, then stops gracefully."""
    if settings.migrate_on_start:
        await migrate.upgrade_when_reachable(database_url, timeout=60)
    metrics = start_metrics_server(host=settings.metrics_bind_host, port=settings.providers_metrics_port)
    server = await start_providers_server(
        settings,
        database_url=database_url,
        address=f"{settings.grpc_bind_host}:{settings.providers_grpc_port}",
        registry=registry,
    )
    log.info(
        "providers.serving",
        grpc_port=server.port,
        metrics_port=metrics.port,
        providers=[p.name for p in registry.providers],
    )
    signal = await wait_for_stop_signal()
    log.info("providers.stopping", signal=signal.name)
    await server.stop(settings.shutdown_grace, drain_delay=settings.shutdown_drain_delay)
    metrics.stop()
    log.info("providers.stopped")


def main() -> None:
    """Reads settings and the registry (a bad one stops start-up, naming the place) and serves."""
    settings = load_settings(ProvidersSettings)
    configure_logging(service="providers", level=settings.log_level)
    try:
        registry = load_registry(settings.providers_config)
    except RegistryError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        raise SystemExit(2) from None
    asyncio.run(serve(settings, resolve_database_url(settings), registry))


if __name__ == "__main__":
    main()
