"""Errors to HTTP answers, in one place: 401, 403, 422, 404, 409, 429, 503; never a stack trace."""

from __future__ import annotations

import math
from typing import Any

import grpc
from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from google.protobuf import any_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path

from services.core.logging import get_logger

log = get_logger(__name__)

# The numbers a quota's 429 carries besides the limit's name.
QUOTA_NUMBERS = ("max", "current", "requested")
_STATUS = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.INVALID_ARGUMENT: 422,
    grpc.StatusCode.OUT_OF_RANGE: 422,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
    grpc.StatusCode.CANCELLED: 503,
}


def camel(field: str) -> str:
    """user_id -> userId, for every dotted part (metadata.provider stays as it is)."""
    return ".".join(
        part.split("_")[0] + "".join(word.title() for word in part.split("_")[1:]) for part in field.split(".")
    )


def _details(error: grpc.aio.AioRpcError) -> list[any_pb2.Any]:
    """The google.rpc.Status details the error carries, if any."""
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except Exception:
        return []
    return list(status.details) if status else []


def _field(error: grpc.aio.AioRpcError) -> str | None:
    for detail in _details(error):
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request) and bad_request.field_violations:
            return camel(bad_request.field_violations[0].field)
    return None


def _numbers(info: error_details_pb2.ErrorInfo) -> dict[str, int | float]:
    """The finite numbers of an ErrorInfo's metadata (a quota's max, current, requested)."""
    numbers: dict[str, int | float] = {}
    for name, text in info.metadata.items():
        if name not in QUOTA_NUMBERS:
            continue
        try:
            value = float(text)
        except ValueError:
            continue
        if math.isfinite(value):
            numbers[name] = int(value) if value.is_integer() else value
    return numbers


def _limited(error: grpc.aio.AioRpcError, message: str) -> JSONResponse:
    """A 429 naming the limit (with a quota's max, current and requested), with Retry-After in
    whole seconds (at least 1)."""
    retry_after, limit, numbers = 1, "unknown", {}
    for detail in _details(error):
        retry, quota, info = (
            error_details_pb2.RetryInfo(),
            error_details_pb2.QuotaFailure(),
            error_details_pb2.ErrorInfo(),
        )
        if detail.Unpack(retry):
            retry_after = max(1, math.ceil(retry.retry_delay.ToMilliseconds() / 1000))
        elif detail.Unpack(quota) and quota.violations:
            limit = quota.violations[0].description
        elif detail.Unpack(info):
            numbers = _numbers(info)
    body = {"detail": message, "limit": limit, **numbers, "retryAfterSeconds": retry_after}
    return JSONResponse(status_code=429, content=body, headers={"Retry-After": str(retry_after)})


def grpc_error_response(error: grpc.aio.AioRpcError, *, service: str) -> JSONResponse:
    """The HTTP answer for a failed call to service."""
    status = _STATUS.get(error.code(), 502)
    message = error.details() or error.code().name
    if status == 422:
        field = _field(error) or "body"
        description = message.split(": ", 1)[1] if ": " in message else message
        body = {"detail": [{"loc": ["body", *field.split(".")], "msg": description, "type": "value_error"}]}
        return JSONResponse(status_code=422, content=body)
    if status == 429:
        return _limited(error, message)
    if status == 503:
        log.warning("gateway.backend_unavailable", service=service, code=error.code().name)
        message = f"the {service} service is unavailable, try again later"
    elif status == 502:
        log.error("gateway.backend_error", service=service, code=error.code().name, details=message)
        message = f"the {service} service failed"
    return JSONResponse(status_code=status, content={"detail": message})


def _allowed_methods(request: Request) -> str | None:
    """Every method the API serves at this path; Starlette's own 405 names one route's only."""
    paths: dict[str, dict[str, Any]] = request.app.openapi()["paths"]
    path = request.scope["path"]
    methods = {m.upper() for template, ops in paths.items() if compile_path(template)[0].match(path) for m in ops}
    return ", ".join(sorted(methods)) or None


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own HTTP errors, except that a 405 lists in Allow every method of the path, as
    RFC 9110 requires, not only those of the first route that matched it."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405 and (allowed := _allowed_methods(request)):
        exc.headers = {**(exc.headers or {}), "Allow": allowed}
    return await http_exception_handler(request, exc)


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything unforeseen: logged with its trace, answered as JSON without one."""
    log.exception("gateway.unexpected_error", path=request.url.path)
    return JSONResponse(status_code=500, content={"detail": "internal error"})


class BackendError(Exception):
    """A gRPC call to a service failed; answered by grpc_error_response."""

    def __init__(self, error: grpc.aio.AioRpcError, service: str) -> None:
        super().__init__(f"{service}: {error.code().name}")
        self.error = error
        self.service = service


async def backend_error(request: Request, exc: Exception) -> JSONResponse:
    """The exception handler of BackendError."""
    assert isinstance(exc, BackendError)
    return grpc_error_response(exc.error, service=exc.service)
