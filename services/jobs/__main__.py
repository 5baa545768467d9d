"""`python -m services.jobs`: the jobs service on JOBS_GRPC_PORT, metrics on JOBS_METRICS_PORT."""

from __future__ import annotations

import uvloop

from services.core.embedded import resolve_database_url, resolve_redis_url
from services.core.logging import configure_logging
from services.core.runtime import DatabaseService, serve_until_signal
from services.core.settings import load_settings
from services.core.tasks import broker_url
from services.jobs.server import start_jobs_server
from services.jobs.settings import JobsSettings


def main() -> None:
    """Reads settings, resolves the database (embedded when unset) and serves."""
    settings = load_settings(JobsSettings)
    configure_logging(service="jobs", level=settings.log_level)
    redis_url = resolve_redis_url(settings)
    broker = broker_url(settings, redis_url)
    database_url = resolve_database_url(settings)

    async def start(address: str) -> DatabaseService:
        return await start_jobs_server(
            settings, database_url=database_url, address=address, broker=broker, redis_url=redis_url
        )

    uvloop.run(
        serve_until_signal(
            "jobs",
            settings,
            database_url=database_url,
            grpc_port=settings.jobs_grpc_port,
            metrics_port=settings.jobs_metrics_port,
            start=start,
        )
    )


if __name__ == "__main__":
    main()
