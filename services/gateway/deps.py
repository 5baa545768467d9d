"""Dependencies of the routes: the backends, and calls to them with deadline and request id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import Depends, Request

from services.core.logging import REQUEST_ID_HEADER, current_request_id
from services.gateway.clients import Backends
from services.gateway.errors import BackendError

Reply = TypeVar("Reply")


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
        return await method(request, timeout=timeout or backends.timeout, metadata=_metadata())
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
        rpc = method(request, timeout=timeout or backends.timeout, metadata=_metadata())
        reply = await rpc
        initial = await rpc.initial_metadata()
    except grpc.aio.AioRpcError as error:
        raise BackendError(error, service) from None
    return reply, {str(key): str(value) for key, value in initial or ()}


def _metadata() -> tuple[tuple[str, str], ...]:
    """The caller's request id, passed on to the service."""
    request_id = current_request_id()
    return ((REQUEST_ID_HEADER, request_id),) if request_id else ()
