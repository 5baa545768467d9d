"""gRPC server bootstrap: health, reflection, the interceptor, and a graceful stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor, ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]
from grpc_reflection.v1alpha import reflection

from services.core.auth import CallGuard
from services.core.channels import server_keepalive_options
from services.core.interceptors import Outage, ServiceInterceptor, no_outage
from services.core.logging import get_logger

log = get_logger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# A health service name that is SERVING from start to shutdown whatever the dependencies say:
# what a liveness probe asks, so that a database outage never gets a process restarted.
LIVENESS = "liveness"


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer, the generated function that registers it, and its service's descriptor.

    An internal service (the workers' side of the system) takes the service credential only,
    and reflection never describes it."""

    servicer: Any
    register: Callable[[Any, grpc.aio.Server], None]
    descriptor: ServiceDescriptor
    internal: bool = False

    @property
    def name(self) -> str:
        """The full service name, "videogen.v1.JobService"."""
        return self.descriptor.full_name


@dataclass
class GrpcApp:
    """A started gRPC server with its health servicer."""

    server: grpc.aio.Server
    health: health_aio.HealthServicer
    port: int
    service_names: tuple[str, ...]
    serving: bool | None = field(default=None)

    async def set_serving(self, serving: bool) -> None:
        """Reports SERVING or NOT_SERVING for "" and every service of the server."""
        if serving == self.serving:
            return
        self.serving = serving
        status = SERVING if serving else NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace: float, *, drain_delay: float = 0) -> None:
        """Turns NOT_SERVING, keeps answering for drain_delay so that balancers notice,
        lets the calls in flight finish within grace, then stops."""
        await self.health.enter_graceful_shutdown()
        if drain_delay > 0:
            await asyncio.sleep(drain_delay)
        await self.server.stop(grace)


async def start_grpc_app(
    bindings: Sequence[ServiceBinding],
    *,
    address: str,
    max_message_bytes: int,
    guard: CallGuard,
    describe: Sequence[ServiceDescriptor] = (),
    outage: Outage = no_outage,
) -> GrpcApp:
    """Builds and starts a server on address ("host:0" picks a free port); NOT_SERVING until told,
    except for the LIVENESS name, which is SERVING until shutdown.

    Every call passes the guard. Reflection describes the public services, plus `describe`
    (services served elsewhere, for the edge's reflection), never an internal one. An error
    that outage recognises (a database down) answers UNAVAILABLE rather than INTERNAL."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        *server_keepalive_options(),
    ]
    server = grpc.aio.server(interceptors=[ServiceInterceptor(guard, outage)], options=options)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for binding in bindings:
        binding.register(binding.servicer, server)
    names = tuple(binding.name for binding in bindings)
    described = [b.descriptor for b in bindings if not b.internal] + list(describe)
    described.append(health_pb2.DESCRIPTOR.services_by_name["Health"])
    reflection.enable_server_reflection(
        (*dict.fromkeys(d.full_name for d in described), reflection.SERVICE_NAME),
        server,
        pool=public_pool([d.file for d in described]),
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    await server.start()
    app = GrpcApp(server=server, health=health, port=port, service_names=names)
    await app.set_serving(False)
    await health.set(LIVENESS, SERVING)
    return app


def public_pool(files: Sequence[FileDescriptor]) -> descriptor_pool.DescriptorPool:
    """A descriptor pool of these files and what they import, and nothing else: reflection
    answers from it, so that no internal service or message can be found through it."""
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)
        added.add(file.name)

    for file in files:
        add(file)
    return pool


async def watch_dependency(app: GrpcApp, check: Callable[[], Awaitable[bool]], *, interval: float, name: str) -> None:
    """Keeps the health status equal to what check() says, every interval seconds."""
    while True:
        try:
            healthy = await check()
        except Exception:
            log.exception("dependency.check_failed", dependency=name)
            healthy = False
        if healthy != app.serving:
            log.info("dependency.reachable" if healthy else "dependency.unreachable", dependency=name)
        await app.set_serving(healthy)
        await asyncio.sleep(interval)


async def wait_for_stop_signal() -> signal.Signals:
    """Returns once SIGTERM or SIGINT arrives; later ones are logged and ignored, so that
    a second Ctrl-C or a repeated SIGTERM never cuts the graceful stop short."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def on_signal(sig: signal.Signals) -> None:
        if received.done():
            log.info("shutdown.in_progress", signal=sig.name)
        else:
            received.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return await received
