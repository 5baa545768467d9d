"""`python -m services.jobs`: the jobs service on JOBS_GRPC_PORT, metrics on JOBS_METRICS_PORT."""

from __future__ import annotations

import asyncio

from services.core import migrate
from services.core.embedded import resolve_database_url, resolve_redis_url
from services.core.grpc_server import wait_for_stop_signal
from services.core.logging import configure_logging, get_logger
from services.core.metrics import start_metrics_server
from services.core.settings import load_settings
from services.core.tasks import broker_url
from services.jobs.server import start_jobs_server
from services.jobs.settings import JobsSettings

log = get_logger("services.jobs")


async def serve(settings: JobsSettings, database_url: str, broker: str) -> None:
    """Runs until SIGTERM or SIGINT, then stops gracefully."""
    if settings.migrate_on_start:
        await migrate.upgrade_when_reachable(database_url, timeout=60)
    metrics = start_metrics_server(host=settings.metrics_bind_host, port=settings.jobs_metrics_port)
    server = await start_jobs_server(
        settings,
        database_url=database_url,
        address=f"{settings.grpc_bind_host}:{settings.jobs_grpc_port}",
        broker=broker,
    )
    log.info("jobs.serving", grpc_port=server.port, metrics_port=metrics.port)
    signal = await wait_for_stop_signal()
    log.info("jobs.stopping", signal=signal.name, grace_seconds=settings.shutdown_grace)
    await server.stop(settings.shutdown_grace, drain_delay=settings.shutdown_drain_delay)
    metrics.stop()
    log.info("jobs.stopped")


def main() -> None:
    """Reads settings, resolves the database (embedded when unset) and serves."""
    settings = load_settings(JobsSettings)
    configure_logging(service="jobs", level=settings.log_level)
    broker = broker_url(settings, resolve_redis_url(settings))
    asyncio.run(serve(settings, resolve_database_url(settings), broker))


if __name__ == "__main__":
    main()
