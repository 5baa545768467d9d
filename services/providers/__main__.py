"""`python -m services.providers`: the providers service on PROVIDERS_GRPC_PORT, metrics on 9102."""

from __future__ import annotations

import sys

import uvloop

from services.core.embedded import resolve_database_url
from services.core.generators.kinds import build_providers
from services.core.generators.registry import RegistryError, load_registry
from services.core.logging import configure_logging
from services.core.runtime import DatabaseService, serve_until_signal
from services.core.settings import load_settings
from services.providers.server import start_providers_server
from services.providers.settings import ProvidersSettings


def main() -> None:
    """Reads settings and the registry (a bad one stops start-up, naming the place) and serves."""
    settings = load_settings(ProvidersSettings)
    configure_logging(service="providers", level=settings.log_level)
    try:
        registry = load_registry(settings.providers_config)
        # Building each provider reads what its entry names (a comfyui workflow file): checked now.
        build_providers(registry)
    except RegistryError as exc:
        sys.stderr.write(f"configuration error: {exc}\n")
        raise SystemExit(2) from None
    database_url = resolve_database_url(settings)

    async def start(address: str) -> DatabaseService:
        return await start_providers_server(settings, database_url=database_url, address=address, registry=registry)

    uvloop.run(
        serve_until_signal(
            "providers",
            settings,
            database_url=database_url,
            grpc_port=settings.providers_grpc_port,
            metrics_port=settings.providers_metrics_port,
            start=start,
            providers=[p.name for p in registry.providers],
        )
    )


if __name__ == "__main__":
    main()
