"""Channels to the internal services, presenting the service credential as the worker does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from services.core.auth import service_metadata
from services.core.settings import CoreSettings
from videogen.v1 import jobs_pb2_grpc, lifecycle_pb2_grpc

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub
    from videogen.v1.lifecycle_pb2_grpc import JobLifecycleServiceAsyncStub

    _Interceptor: TypeAlias = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.UnaryUnaryClientInterceptor


def test_credentials(secret_key: str | None = None) -> tuple[tuple[str, str], ...]:
    """The service credential of SECRET_KEY (the tests' settings' when not given)."""
    key = secret_key if secret_key is not None else CoreSettings(_env_file=None).secret_key.get_secret_value()
    return service_metadata(key)


class _Credential(_Interceptor):
    """Adds the credential to every unary call of the channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    async def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        metadata = grpc.aio.Metadata(*(tuple(details.metadata or ()) + self._metadata))
        presented = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        return await continuation(presented, request)


def internal_channel(target: str, *, secret_key: str | None = None) -> grpc.aio.Channel:
    """A channel whose unary calls carry the service credential."""
    interceptor: Any = _Credential(test_credentials(secret_key))
    return grpc.aio.insecure_channel(target, interceptors=[interceptor])


@dataclass(frozen=True)
class JobsClients:
    """A jobs service's public JobService and its internal JobLifecycleService (as a worker)."""

    jobs: JobServiceAsyncStub
    lifecycle: JobLifecycleServiceAsyncStub


@asynccontextmanager
async def jobs_clients(port: int, *, secret_key: str | None = None) -> AsyncIterator[JobsClients]:
    """Both clients of the jobs service on port, closed on exit."""
    target = f"127.0.0.1:{port}"
    async with (
        grpc.aio.insecure_channel(target) as public,
        internal_channel(target, secret_key=secret_key) as internal,
    ):
        yield JobsClients(jobs_pb2_grpc.JobServiceStub(public), lifecycle_pb2_grpc.JobLifecycleServiceStub(internal))
