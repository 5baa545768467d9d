"""A running database-backed gRPC service, and the serve-until-signal loop the services share."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from services.core import migrate, tracing
from services.core.grpc_server import GrpcApp, wait_for_stop_signal, watch_dependency
from services.core.logging import get_logger
from services.core.metrics import start_metrics_server
from services.core.settings import CoreSettings

log = get_logger(__name__)
# Seconds the background loops get to end before the server stops without them.
BACKGROUND_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Background:
    """What a subsystem runs beside a server: its loops, started once the server is up, and the
    hooks its stop needs (before the drain: ask loops to end; after it: close clients)."""

    loops: tuple[tuple[str, Callable[[], Awaitable[None]]], ...] = ()
    before_stop: tuple[Callable[[], None], ...] = ()
    after_stop: tuple[Callable[[], object], ...] = ()

    def start(self) -> list[asyncio.Task[None]]:
        """One task per loop, named for it."""
        return [asyncio.create_task(_awaited(run), name=name) for name, run in self.loops]


async def _awaited(run: Callable[[], Awaitable[None]]) -> None:
    await run()


@dataclass
class DatabaseService:
    """A gRPC server, its database pool and its background loops, stopped in the right order."""

    app: GrpcApp
    engine: AsyncEngine
    tasks: list[asyncio.Task[None]]
    # Called first on stop (ask loops to end), and after the server stopped (close clients;
    # a hook may be a coroutine function).
    before_stop: list[Callable[[], None]] = field(default_factory=list)
    after_stop: list[Callable[[], object]] = field(default_factory=list)

    @classmethod
    def serving(cls, app: GrpcApp, engine: AsyncEngine, parts: list[Background]) -> DatabaseService:
        """The service of app, with the loops of parts started now and their hooks in order."""
        return cls(
            app=app,
            engine=engine,
            tasks=[task for part in parts for task in part.start()],
            before_stop=[hook for part in parts for hook in part.before_stop],
            after_stop=[hook for part in parts for hook in part.after_stop],
        )

    @property
    def port(self) -> int:
        """The bound gRPC port."""
        return self.app.port

    async def stop(self, grace: float, *, drain_delay: float = 0) -> None:
        """Ends the loops, turns NOT_SERVING, drains the calls in flight, closes the pool."""
        for hook in self.before_stop:
            hook()
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            _, stuck = await asyncio.wait(self.tasks, timeout=BACKGROUND_STOP_TIMEOUT)
            for task in stuck:
                log.warning("service.background_task_not_stopped", task=task.get_name())
        await self.app.stop(grace, drain_delay=drain_delay)
        for closer in self.after_stop:
            outcome = closer()
            if inspect.isawaitable(outcome):
                await outcome
        await self.engine.dispose()


def database_health(settings: CoreSettings, app: GrpcApp, engine: AsyncEngine) -> Background:
    """The server is SERVING while its database answers with the schema this code needs."""
    gate = migrate.SchemaGate(engine, timeout=min(settings.db_connect_timeout, settings.health_check_interval * 2))

    async def watch() -> None:
        await watch_dependency(app, gate, interval=settings.health_check_interval, name="database")

    return Background(loops=(("database-health", watch),))


async def serve_until_signal(
    name: str,
    settings: CoreSettings,
    *,
    database_url: str,
    grpc_port: int,
    metrics_port: int,
    start: Callable[[str], Awaitable[DatabaseService]],
    **log_fields: Any,
) -> None:
    """Migrates (when asked), serves metrics and gRPC until SIGTERM or SIGINT, then stops gracefully."""
    tracing.configure_tracing(name, endpoint=settings.otel_exporter_otlp_endpoint)
    if settings.migrate_on_start:
        await migrate.upgrade_when_reachable(database_url, timeout=60)
    metrics = start_metrics_server(host=settings.metrics_bind_host, port=metrics_port)
    server = await start(f"{settings.grpc_bind_host}:{grpc_port}")
    log.info(f"{name}.serving", grpc_port=server.port, metrics_port=metrics.port, **log_fields)
    signal = await wait_for_stop_signal()
    log.info(f"{name}.stopping", signal=signal.name, grace_seconds=settings.shutdown_grace)
    await server.stop(settings.shutdown_grace, drain_delay=settings.shutdown_drain_delay)
    metrics.stop()
    tracing.shutdown_tracing()
    log.info(f"{name}.stopped")
