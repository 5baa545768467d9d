"""The gateway application: routes, middleware, error handlers and lifespan."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import Histogram
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core import tracing
from services.core.logging import REQUEST_ID_HEADER, get_logger, new_request_id
from services.core.storage.local import local_storage
from services.gateway import console, events, jobs, keys, ops, providers, queues, streams, webhooks
from services.gateway.clients import open_backends
from services.gateway.deps import PRESENTED_KEY
from services.gateway.errors import BackendError, backend_error, http_error, unexpected_error
from services.gateway.schemas import Problem
from services.gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = get_logger(__name__)
EDGE_REFUSAL = (
    "The edge refused a malformed request: an escaped slash or backslash (`%2F`, `%5C`) in the path, "
    "or a header name with an underscore"
)
EDGE_RATE_LIMIT = (
    "The edge's rate limit (EDGE_RATE_LIMIT_PER_SECOND, every client together) is passed: try again after "
    "`Retry-After` seconds"
)
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}
API_KEY_SCHEME = "ApiKey"
UNAUTHENTICATED = "No valid X-API-Key: required with APP_ENV=production, and a presented key must be live"
FORBIDDEN = "The key may not do this: a per-user key naming another user, or an admin-only route with a per-user key"
TOO_LARGE = "The body is larger than GATEWAY_MAX_BODY_BYTES (64 KiB unless set)"
REQUEST_LATENCY = Histogram(
    "api_request_duration_seconds",
    "REST request latency, by method, route template and status.",
    ["method", "endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
# What a presented X-API-Key may hold: printable ASCII, as gRPC metadata must.
_API_KEY = re.compile(r"[\x20-\x7e]{1,512}")
# Probes and scrapes come every few seconds: no log line for them.
_QUIET_PATHS = ("/health", "/metrics")
# A request this slow gets an access log line whatever GATEWAY_ACCESS_LOG says.
SLOW_REQUEST_SECONDS = 1.0


def create_app(settings: GatewaySettings, *, redis_url: str) -> FastAPI:
    """The FastAPI application; backends are opened when it starts and closed when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.backends = open_backends(settings, redis_url=redis_url)
        yield
        await app.state.backends.close()

    app = FastAPI(
        title="VideoGen API",
        version="1.0.0",
        description="Submit AI video generation jobs, follow them, and fetch their videos.",
        lifespan=lifespan,
        # Answered by the edge itself, on any path (deploy/envoy/envoy.yaml).
        responses={
            400: {"model": Problem, "description": EDGE_REFUSAL},
            429: {"model": Problem, "description": EDGE_RATE_LIMIT, "headers": RETRY_AFTER},
        },
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    # With MEDIA_BACKEND=s3 clients fetch videos from the store itself (presigned URLs): none here.
    app.state.storage = local_storage(settings.media_root, settings)
    for router in (
        jobs.router,
        events.router,
        streams.router,
        webhooks.router,
        keys.router,
        queues.router,
        providers.router,
        ops.router,
        console.router,
    ):
        app.include_router(router)
    app.state.console = console.ConsoleAssets.load()
    app.add_exception_handler(BackendError, backend_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)
    _add_middleware(app, settings)
    production = settings.app_env == "production"
    app.openapi = lambda: document(app, production=production)  # type: ignore[method-assign]
    return app


def operation_id(route: APIRoute) -> str:
    """A route's operationId: its function's name in camelCase (create_job: createJob)."""
    head, *rest = route.name.split("_")
    return head + "".join(word.capitalize() for word in rest)


def document(app: FastAPI, *, production: bool) -> dict[str, Any]:
    """The OpenAPI document, with what the middleware and the edge add to every route: the API
    key scheme on /api/ (required in production, optional otherwise; 401 for a missing or bad
    key, 403 for what the key may not do), and 413 on every request body past
    GATEWAY_MAX_BODY_BYTES."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes, tags=app.openapi_tags
    )
    spec.setdefault("components", {})["securitySchemes"] = {
        API_KEY_SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "The admin key (API_KEY) or a per-user key (POST /api/v1/api-keys). Required with "
            "APP_ENV=production; in development a request without one acts as the admin.",
        }
    }
    problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            answers = operation["responses"]
            if path.startswith("/api/"):
                # An empty requirement: no key at all is accepted too (outside production).
                operation["security"] = [{API_KEY_SCHEME: []}] if production else [{API_KEY_SCHEME: []}, {}]
                answers.setdefault("401", {"description": UNAUTHENTICATED, "content": problem})
                answers.setdefault("403", {"description": FORBIDDEN, "content": problem})
            if "requestBody" in operation:
                answers.setdefault("413", {"description": TOO_LARGE, "content": problem})
    app.openapi_schema = spec
    return spec


class ChunkedBodyLimit:
    """The body limit for requests that state no Content-Length (chunked): the body is read,
    at most max_bytes of it, before the route sees it; more is 413. Requests with a
    Content-Length are refused up front by the guard, without reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(name == b"content-length" for name, _ in scope["headers"]):
            await self._app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self._max:
                refusal = JSONResponse(
                    status_code=413, content={"detail": f"the body must be at most {self._max} bytes"}
                )
                await refusal(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self._app(scope, replayed, send)


class Guard:
    """Request id, body size limit, the API key's presence, the latency metric and the access log,
    for every request: a plain ASGI middleware, so that the route runs in the request's own task.

    The key itself is checked by the service each route calls (it travels as x-api-key): one
    set of rules for REST and gRPC. In production a request to /api/ without one is refused here."""

    def __init__(self, app: ASGIApp, settings: GatewaySettings) -> None:
        self._app = app
        self._settings = settings
        self._production = settings.app_env == "production"
        self._log_all = settings.gateway_access_log == "all"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get(REQUEST_ID_HEADER, "")
        request_id = request_id if _REQUEST_ID.fullmatch(request_id) else new_request_id()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        PRESENTED_KEY.set(headers.get("x-api-key") or None)
        started = time.perf_counter()
        status = 500
        streamed_at: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, streamed_at
            if message["type"] == "http.response.start":
                status = message["status"]
                answer = MutableHeaders(scope=message)
                answer["X-Request-ID"] = request_id
                if answer.get("content-type", "").startswith("text/event-stream"):
                    # An event stream lasts as long as its job: its latency is the time to answer.
                    streamed_at = time.perf_counter()
            await send(message)

        with _request_span(scope, headers) as span:
            try:
                refusal = _refusal(scope, headers, self._settings, production=self._production)
                if refusal is not None:
                    await refusal(scope, receive, send_with_id)
                else:
                    await self._app(scope, receive, send_with_id)
            finally:
                endpoint = getattr(scope.get("route"), "path", "unmatched")
                if span is not None:
                    span.update_name(f"{scope['method']} {endpoint}")
                    span.set_attribute("http.response.status_code", status)
                self._record(scope, endpoint, status, (streamed_at or time.perf_counter()) - started)

    def _record(self, scope: Scope, endpoint: str, status: int, elapsed: float) -> None:
        """The request's latency metric, its access log line when it is worth one, and the end
        of its request id in the log context."""
        REQUEST_LATENCY.labels(scope["method"], endpoint, str(status)).observe(elapsed)
        if self._worth_a_line(scope["path"], status, elapsed):
            log.info(
                "http.request", method=scope["method"], endpoint=endpoint, status=status, ms=round(elapsed * 1000, 2)
            )
        structlog.contextvars.unbind_contextvars("request_id")

    def _worth_a_line(self, path: str, status: int, elapsed: float) -> bool:
        """Whether the request gets an access log line here: the edge writes one for each, so
        only errors and slow requests unless GATEWAY_ACCESS_LOG=all; never the probes'."""
        if path.startswith(_QUIET_PATHS):
            return False
        return self._log_all or status >= 400 or elapsed >= SLOW_REQUEST_SECONDS


def _request_span(scope: Scope, headers: Headers) -> AbstractContextManager[Span | None]:
    """The request's SERVER span (tracing on), child of the client's traceparent; none for the
    probes and scrapes, which would bury the jobs' traces under their own."""
    if not tracing.enabled() or scope["path"].startswith(_QUIET_PATHS):
        return nullcontext()
    attributes = {"http.request.method": scope["method"], "url.path": scope["path"]}
    return tracing.server_span(f"{scope['method']} {scope['path']}", headers, attributes=attributes)


def _add_middleware(app: FastAPI, settings: GatewaySettings) -> None:
    # Added first, so it runs inside the guard (which times and logs its 413s too).
    app.add_middleware(ChunkedBodyLimit, max_bytes=settings.gateway_max_body_bytes)
    app.add_middleware(Guard, settings=settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "X-API-Key", "X-Request-ID", "Range"],
        expose_headers=["X-Request-ID", "Content-Range", "Accept-Ranges"],
    )


def _refusal(scope: Scope, headers: Headers, settings: GatewaySettings, *, production: bool) -> Response | None:
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > settings.gateway_max_body_bytes:
        return JSONResponse(
            status_code=413, content={"detail": f"the body must be at most {settings.gateway_max_body_bytes} bytes"}
        )
    key = headers.get("x-api-key")
    if production and scope["path"].startswith("/api/") and not key:
        return JSONResponse(status_code=401, content={"detail": "a valid X-API-Key header is required"})
    if key and not _API_KEY.fullmatch(key):
        # No key has other characters, and gRPC metadata could not carry them to the services.
        return JSONResponse(status_code=401, content={"detail": "X-API-Key must be 1-512 printable ASCII characters"})
    return None
