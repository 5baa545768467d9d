"""Operations: liveness, readiness, metrics and the stored videos."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from services.core.media_urls import MediaUrlRefused, MediaUrlSigner
from services.core.storage.base import CONTENT_TYPES, InvalidStorageKey
from services.core.storage.local import LocalMediaStorage
from services.gateway.clients import Backends
from services.gateway.deps import BackendsDep
from services.gateway.schemas import Alive, Component, Problem, Readiness

router = APIRouter(tags=["operations"])
# Which service's health says what: the jobs service is SERVING only while PostgreSQL answers.
_CHECKS = {
    "database": ("jobs", "videogen.v1.JobService"),
    "jobs": ("jobs", ""),
    "providers": ("providers", ""),
    "worker": ("worker", ""),
}


@router.get("/health", response_model=Alive)
async def health() -> Alive:
    """200 while the gateway runs; it checks nothing else."""
    return Alive()


async def _timed(check: Awaitable[bool], timeout: float) -> Component:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            up = await check
    except Exception:  # a timeout, a refused call or a client library failing: the dependency is down
        up = False
    latency = round((time.perf_counter() - started) * 1000, 3)
    return Component(status="up" if up else "down", latencyMs=latency)


async def _serving(backends: Backends, name: str, service: str, timeout: float) -> bool:
    reply = await backends.health[name].Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _redis(backends: Backends) -> bool:
    return bool(await backends.redis.ping())


@router.get("/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(request: Request, backends: BackendsDep) -> JSONResponse:
    """200 when PostgreSQL, Redis and the jobs, providers and worker services all answer, else 503."""
    timeout = request.app.state.settings.gateway_readiness_timeout
    names = ["redis", *_CHECKS]
    checks = [_timed(_redis(backends), timeout)] + [
        _timed(_serving(backends, target, service, timeout), timeout) for target, service in _CHECKS.values()
    ]
    components = dict(zip(names, await asyncio.gather(*checks), strict=True))
    ordered = {name: components[name] for name in ("database", "redis", "jobs", "providers", "worker")}
    is_ready = all(c.status == "up" for c in ordered.values())
    body = Readiness(status="ready" if is_ready else "not_ready", components=ordered)
    return JSONResponse(status_code=200 if is_ready else 503, content=body.model_dump())


@router.get("/metrics", include_in_schema=True, response_class=Response)
async def metrics() -> Response:
    """The gateway's own Prometheus metrics."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


# Where a bare /media/<key> (no signature) is still served, so that curl walk-throughs work.
_BARE_MEDIA_ENVS = ("development", "test")
_BYTES = {"schema": {"type": "string", "format": "binary"}}
_MEDIA_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "The video", "content": dict.fromkeys(CONTENT_TYPES.values(), _BYTES)},
    206: {
        "description": "The bytes a `Range` header asked for (several ranges: multipart/byteranges)",
        "content": dict.fromkeys([*CONTENT_TYPES.values(), "multipart/byteranges"], _BYTES),
    },
    403: {
        "model": Problem,
        "description": "The URL is expired, its signature does not match it, or it is unsigned (refused except "
        "with APP_ENV development or test): GET the job again for a fresh `result.videoUrl`",
    },
    404: {"model": Problem, "description": "No such video"},
}


@router.get("/media/{key}", response_class=FileResponse, responses=_MEDIA_ANSWERS)
async def media(
    key: str,
    request: Request,
    expires: Annotated[
        str | None, Query(description="When the URL stops working, in Unix seconds (from the job's videoUrl)")
    ] = None,
    signature: Annotated[
        str | None, Query(description="The URL's signature, unpadded URL-safe base64 (from the job's videoUrl)")
    ] = None,
) -> Response:
    """A stored video, by the signed, expiring URL a job's `result.videoUrl` gives (a bare path
    works only with APP_ENV development or test); `Range` requests get 206 with the asked bytes.
    An expired or tampered URL is 403: GET the job again for a fresh one. With MEDIA_BACKEND=s3
    the videos are fetched from the store (the job's presigned `videoUrl`), never here: 404."""
    storage: LocalMediaStorage | None = request.app.state.storage
    if storage is None or storage.urls is None:
        raise HTTPException(status_code=404, detail="no such video")
    try:
        # Before the file is looked for, so that an unsigned request cannot tell which videos exist.
        expiry = _signed_expiry(storage.urls, key, expires, signature, app_env=request.app.state.settings.app_env)
    except MediaUrlRefused as refused:
        raise HTTPException(status_code=403, detail=str(refused), headers={"Cache-Control": "no-store"}) from None
    try:
        path = storage.path(key)
    except InvalidStorageKey:
        raise HTTPException(status_code=404, detail="no such video") from None
    if not path.is_file():
        raise HTTPException(status_code=404, detail="no such video")
    # A cache may keep the video no longer than its URL works, and a shared cache not at all.
    cache = "private, no-cache" if expiry is None else f"private, max-age={max(0, expiry - int(time.time()))}"
    return FileResponse(path, media_type=CONTENT_TYPES[key.rsplit(".", 1)[1]], headers={"Cache-Control": cache})


def _signed_expiry(
    urls: MediaUrlSigner, key: str, expires: str | None, signature: str | None, *, app_env: str
) -> int | None:
    """When the request's signed URL of key expires; None for a bare path where one is still
    served (development and test); MediaUrlRefused for anything else."""
    if expires is None and signature is None and app_env in _BARE_MEDIA_ENVS:
        return None
    return urls.check(key, expires=expires, signature=signature)
