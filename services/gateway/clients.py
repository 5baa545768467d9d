"""Long-lived gRPC channels to the services, and Redis, opened once per gateway process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2_grpc

from services.core.channels import aio_channel
from services.gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from grpc_health.v1.health_pb2_grpc import HealthStub

    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.providers_pb2_grpc import ProviderServiceAsyncStub
from videogen.v1 import jobs_pb2_grpc, providers_pb2_grpc


@dataclass
class Backends:
    """What the gateway talks to."""

    jobs: JobServiceAsyncStub
    providers: ProviderServiceAsyncStub
    health: dict[str, HealthStub]
    redis: aioredis.Redis
    channels: list[grpc.aio.Channel]
    timeout: float

    async def close(self) -> None:
        """Closes every channel and connection."""
        for channel in self.channels:
            await channel.close(None)
        await self.redis.aclose()


def open_backends(settings: GatewaySettings, *, redis_url: str) -> Backends:
    """Channels to jobs, providers and worker; they connect lazily and reconnect by themselves."""
    targets = {"jobs": settings.jobs_target, "providers": settings.providers_target, "worker": settings.worker_target}
    # Each target may list several replicas: calls go round-robin to those that are up.
    channels = {
        name: aio_channel(target, max_message_bytes=settings.grpc_max_message_bytes) for name, target in targets.items()
    }
    return Backends(
        jobs=jobs_pb2_grpc.JobServiceStub(channels["jobs"]),
        providers=providers_pb2_grpc.ProviderServiceStub(channels["providers"]),
        health={name: health_pb2_grpc.HealthStub(channel) for name, channel in channels.items()},
        redis=aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2),
        channels=list(channels.values()),
        timeout=settings.gateway_rpc_timeout,
    )
