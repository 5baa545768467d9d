"""Dependencies of the routes: the backends, and calls to them with deadline and request id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import Depends, Request

from services.core import tracing
from services.core.auth import API_KEY_METADATA
from services.core.logging import REQUEST_ID_HEADER, current_request_id
from services.gateway.clients import Backends
from services.gateway.errors import BackendError

Reply = TypeVar("Reply")
# The X-API-Key of the request in progress, passed on to the services, which decide what it may
# do (services/core/auth.py): the gateway holds no key and no rule of its own.
PRESENTED_KEY: ContextVar[str | None] = ContextVar("presented_key", default=None)


async def get_backends(request: Request) -> Backends:
    """The backends opened at start-up (async: FastAPI runs a plain def dependency on a thread)."""
    backends: Backends = request.app.state.backends
    return backends


BackendsDep = Annotated[Backends, Depends(get_backends)]


async def call(
    method: Callable[..., Awaitable[Reply]],
    request: Any,
    *,
    backends: Backends,
    service: str,
    timeout: float | None = None,
) -> Reply:
    """One gRPC call with a deadline (the gateway's unless given) and the caller's request id."""
    try:
        return await method(request, timeout=timeout or backends.timeout, metadata=call_metadata())
    except grpc.aio.AioRpcError as error:
        raise BackendError(error, service) from None


async def call_with_metadata(
    method: Callable[..., Any],
    request: Any,
    *,
    backends: Backends,
    service: str,
    timeout: float | None = None,
) -> tuple[Any, dict[str, str]]:
    """As call(), and the response's initial metadata (one more await: only where it is read)."""
    try:
        rpc = method(request, timeout=timeout or backends.timeout, metadata=call_metadata())
        reply = await rpc
        initial = await rpc.initial_metadata()
    except grpc.aio.AioRpcError as error:
        raise BackendError(error, service) from None
    return reply, {str(key): str(value) for key, value in initial or ()}


def call_metadata() -> tuple[tuple[str, str], ...]:
    """The caller's request id and API key, passed on to the service."""
    metadata: list[tuple[str, str]] = []
    if request_id := current_request_id():
        metadata.append((REQUEST_ID_HEADER, request_id))
    if key := PRESENTED_KEY.get():
        metadata.append((API_KEY_METADATA, key))
    return (*metadata, *tracing.trace_metadata())
