"""`python -m services.gateway`: the REST gateway on API_HOST:API_PORT (8080)."""

from __future__ import annotations

import asyncio

import uvicorn
import uvloop

from services.core import tracing
from services.core.embedded import resolve_redis_url
from services.core.logging import configure_logging, get_logger
from services.core.settings import load_settings
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings

log = get_logger("services.gateway")


async def serve(settings: GatewaySettings) -> None:
    """Serves until SIGTERM or SIGINT; uvicorn finishes the requests in flight."""
    app = create_app(settings, redis_url=resolve_redis_url(settings))
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        server_header=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        log.info("gateway.serving", port=port)
    await task
    log.info("gateway.stopped")


def main() -> None:
    """Reads settings and serves."""
    settings = load_settings(GatewaySettings)
    configure_logging(service="gateway", level=settings.log_level)
    tracing.configure_tracing("gateway", endpoint=settings.otel_exporter_otlp_endpoint)
    try:
        uvloop.run(serve(settings))
    finally:
        tracing.shutdown_tracing()


if __name__ == "__main__":
    main()
