"""One server interceptor: request id, metrics, and domain errors turned into gRPC statuses."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc
import structlog
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.core import tracing
from services.core.auth import CallGuard
from services.core.errors import DomainError, InvalidArgument, ResourceExhausted
from services.core.logging import REQUEST_ID_HEADER, get_logger, new_request_id
from services.core.metrics import GRPC_HANDLED, GRPC_LATENCY, GRPC_STARTED

log = get_logger(__name__)
UNTRACED_SERVICES = frozenset(
    {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"}
)
# The google.rpc.ErrorInfo domain of our errors.
ERROR_DOMAIN = "videogen.v1"

if TYPE_CHECKING:
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
    _Interceptor: TypeAlias = grpc.aio.ServerInterceptor[Any, Any]
else:
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor
Continuation: TypeAlias = Callable[[grpc.HandlerCallDetails], Awaitable["Handler | None"]]
# Whether an error means a dependency is down (services/core/db.py's is_unavailable for a service
# with a database): passed in, so that a server without one (the worker) imports no database code.
Outage: TypeAlias = Callable[[BaseException], bool]


def no_outage(exc: BaseException) -> bool:
    """The Outage of a server with no database: no error means one."""
    return False


def _status_of(exc: BaseException, outage: Outage) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]:
    """The status an exception answers, its message, and trailing metadata with details."""
    if isinstance(exc, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(field=exc.field, description=exc.description)
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        rich = rpc_status.to_status(
            status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message=str(exc), details=[detail])
        )
        return rich.code, rich.details, tuple(rich.trailing_metadata)
    if isinstance(exc, ResourceExhausted):
        retry, quota = any_pb2.Any(), any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(max(1, math.ceil(exc.retry_after * 1000)))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        violation = error_details_pb2.QuotaFailure.Violation(subject=exc.subject, description=exc.limit)
        quota.Pack(error_details_pb2.QuotaFailure(violations=[violation]))
        details = [retry, quota]
        if exc.details:
            info = any_pb2.Any()
            numbers = {name: repr(float(value)) for name, value in exc.details.items()}
            info.Pack(error_details_pb2.ErrorInfo(reason="QUOTA_EXCEEDED", domain=ERROR_DOMAIN, metadata=numbers))
            details.append(info)
        rich = rpc_status.to_status(
            status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=str(exc), details=details)
        )
        return rich.code, rich.details, tuple(rich.trailing_metadata)
    if isinstance(exc, DomainError):
        return exc.code, str(exc), ()
    if outage(exc):
        return grpc.StatusCode.UNAVAILABLE, "the database is unavailable, try again later", ()
    return grpc.StatusCode.INTERNAL, "internal error", ()


class Malformed:
    """What a request that is not a valid message of its type decodes to: answered
    INVALID_ARGUMENT by the interceptor instead of gRPC's own INTERNAL."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return Malformed(exc)

    return deserialize


def _malformed_error(request: Malformed) -> InvalidArgument:
    return InvalidArgument("request", f"is not a valid protobuf message ({type(request.error).__name__})")


class ServiceInterceptor(_Interceptor):
    """Admits each call (its credential, through the guard), binds the caller's request id and
    principal, counts and times each RPC, and maps its errors."""

    def __init__(self, guard: CallGuard, outage: Outage = no_outage) -> None:
        self._guard = guard
        self._outage = outage

    async def intercept_service(  # type: ignore[override]
        self, continuation: Continuation, details: grpc.HandlerCallDetails
    ) -> Handler | None:
        handler = await continuation(details)
        if handler is None:
            return None
        service, _, method = details.method.lstrip("/").rpartition("/")
        call = _CallSite(self._guard, self._outage, service, method, _request_id(details))
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, call),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, call),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, call),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _request_id(details: grpc.HandlerCallDetails) -> str:
    for key, value in details.invocation_metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return new_request_id()


@dataclass(frozen=True)
class _CallSite:
    """What every call of one method shares: its names, the guard and outage check, the caller's
    request id."""

    guard: CallGuard
    outage: Outage
    service: str
    method: str
    request_id: str


class _Call:
    """The bookkeeping of one RPC: admission, context binding, metrics and error mapping."""

    def __init__(self, site: _CallSite) -> None:
        self.site = site
        self.service, self.method = site.service, site.method
        structlog.contextvars.bind_contextvars(request_id=site.request_id, rpc=site.method)
        GRPC_STARTED.labels(site.service, site.method).inc()
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK

    async def admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Checks the call's credential and binds its principal (Unauthenticated otherwise)."""
        await self.site.guard.admit(self.service, context.invocation_metadata())

    async def fail(self, exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            self.code = context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        self.code, message, trailers = _status_of(exc, self.site.outage)
        if self.code is grpc.StatusCode.INTERNAL:
            log.exception("rpc.failed")
        elif self.code is grpc.StatusCode.UNAVAILABLE:
            log.warning("rpc.unavailable", error=repr(exc))
        await context.abort(self.code, message, trailers)

    def span(self, context: grpc.aio.ServicerContext[Any, Any]) -> AbstractContextManager[object]:
        """The call's SERVER span, child of the trace context its metadata carries (tracing on);
        none for probes and reflection, which would bury the jobs' traces under their own."""
        if not tracing.enabled() or self.service in UNTRACED_SERVICES:
            return nullcontext()
        return tracing.server_span(
            f"{self.service}/{self.method}",
            tracing.metadata_carrier(context.invocation_metadata()),
            attributes={"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": self.method},
        )

    def finish(self) -> None:
        GRPC_HANDLED.labels(self.service, self.method, self.code.name).inc()
        GRPC_LATENCY.labels(self.service, self.method).observe(time.perf_counter() - self.started)


def _wrap_unary(inner: Callable[[Any, Any], Awaitable[Any]], site: _CallSite) -> Callable[[Any, Any], Awaitable[Any]]:
    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(site)
        with call.span(context):
            try:
                await call.admit(context)
                if isinstance(request, Malformed):
                    raise _malformed_error(request)
                return await inner(request, context)
            except Exception as exc:
                await call.fail(exc, context)
            finally:
                call.finish()

    return unary


def _wrap_stream(inner: Callable[[Any, Any], Any], site: _CallSite) -> Callable[[Any, Any], Any]:
    """A unary-stream or stream-stream handler (server reflection: its requests are an iterator,
    never Malformed) behind the same admission and metrics."""
    if not inspect.isasyncgenfunction(inner):
        # A handler that writes with context.write() (grpc.health.v1 Watch) is a coroutine.
        return _wrap_unary(inner, site)

    async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        call = _Call(site)
        with call.span(context):
            try:
                await call.admit(context)
                if isinstance(request, Malformed):
                    raise _malformed_error(request)
                async for response in inner(request, context):
                    yield response
            except Exception as exc:
                await call.fail(exc, context)
            finally:
                call.finish()

    return stream
