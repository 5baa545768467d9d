"""GET /api/v1/events: several jobs' lives in one Server-Sent Events stream.

A browser opens at most six HTTP/1.1 connections to a host, so a page that followed each job on
its own stream could follow four or five at once. This route follows up to MAX_JOBS jobs on one
connection: the gateway opens a WatchJob call for each (multiplexed on its one HTTP/2 channel to
the jobs service, each checked against the caller's key there) and interleaves their events.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Query, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from services.core.job.rules import JOB_ID
from services.core.job.status import FINAL_PROTO
from services.core.logging import get_logger
from services.gateway.deps import BackendsDep, call_metadata
from services.gateway.errors import BackendError
from services.gateway.events import EVENT_SCHEMA, EVENT_STREAM, RECONNECT_MS, STREAM_REFUSALS, event_data
from services.gateway.schemas import Problem
from videogen.v1 import jobs_pb2

log = get_logger(__name__)
router = APIRouter(prefix="/api/v1", tags=["jobs"])
MAX_JOBS = 50
# Sent when no job changed for this long, so that proxies and clients see a live connection.
KEEPALIVE_SECONDS = 15.0
MISSING = "job.missing"
END = object()  # a job's stream ended: it reached a final state

_EXAMPLE = (
    f"retry: {RECONNECT_MS}\n\n"
    'event: job.processing\ndata: {"id":"cm1…","status":"processing","progressPercent":0,…}\n\n'
    'event: job.queued\ndata: {"id":"cm2…","status":"queued","progressPercent":0,…}\n\n'
    'event: job.missing\ndata: {"id":"cm3…"}\n\n'
    'event: job.progress\ndata: {"id":"cm1…","status":"processing","progressPercent":40,…}\n\n'
    ": keep-alive\n\n"
)
_SCHEMA: dict[str, Any] = {
    **EVENT_SCHEMA,
    "properties": {
        **EVENT_SCHEMA["properties"],
        "event": {"type": "string", "enum": [*EVENT_SCHEMA["properties"]["event"]["enum"], MISSING]},
    },
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The jobs' events as Server-Sent Events, interleaved as they happen: first each job's "
        "current state, then each change. `event` is the type (as on `GET /api/v1/jobs/{id}/events`, or "
        f'`{MISSING}` for an id that names no job this key may see, with `data` `{{"id"}}`) and `data` the job '
        "exactly as `GET /api/v1/jobs/{id}` answers it. Events carry no `id`: a client that reconnects asks "
        "again for the jobs it still follows and gets their current states. The stream ends once every "
        "job reached a final state. Comment lines (`: keep-alive`) come while nothing changes.",
        "content": {EVENT_STREAM: {"schema": _SCHEMA, "example": _EXAMPLE}},
    },
    422: {"model": Problem, "description": f"No `jobId`, more than {MAX_JOBS}, or one that cannot be a job id"},
    **STREAM_REFUSALS,
}
JobIds = Annotated[
    list[str],
    Query(
        description=f"A job to follow; repeat it for each (1-{MAX_JOBS} jobs). A user key follows only its "
        "own jobs: another's is `job.missing`.",
    ),
]


def checked_ids(values: Sequence[str]) -> list[str]:
    """The distinct ids in their order, or a 422 naming the one that is wrong."""
    ids = list(dict.fromkeys(values))
    if not ids:
        raise _invalid(("query", "jobId"), "name at least one job", "missing")
    if len(ids) > MAX_JOBS:
        raise _invalid(("query", "jobId"), f"at most {MAX_JOBS} jobs in one stream", "too_long")
    for i, value in enumerate(ids):
        if not JOB_ID.fullmatch(value):
            raise _invalid(("query", "jobId", i), "a job id is 1-32 lowercase letters and digits", "value_error")
    return ids


def _invalid(loc: tuple[str | int, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses=RESPONSES,
    summary="Follow several jobs live in one stream (Server-Sent Events)",
)
async def jobs_events(backends: BackendsDep, jobId: JobIds) -> Response:  # noqa: N803 (the API's name)
    """Streams the states of up to 50 jobs until each is final (see docs/streaming.md)."""
    ids = checked_ids(jobId)
    metadata = call_metadata()
    calls = {job_id: backends.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job_id), metadata=metadata) for job_id in ids}
    try:
        firsts = await asyncio.gather(*(_first(call) for call in calls.values()), return_exceptions=True)
    except asyncio.CancelledError:  # the client left before the first events
        _cancel(calls.values())
        raise
    refusal = next((f for f in firsts if isinstance(f, BaseException) and not _missing(f)), None)
    if refusal is not None:  # before any byte is sent, so that the refusal keeps its status
        _cancel(calls.values())
        if isinstance(refusal, grpc.aio.AioRpcError):
            raise BackendError(refusal, "jobs") from None
        raise refusal
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_merged(calls, firsts), media_type=EVENT_STREAM, headers=headers)


async def _first(call: Any) -> object:
    """The first event of a call, or END."""
    event = await call.read()
    return event if isinstance(event, jobs_pb2.JobEvent) else END


def _missing(outcome: object) -> bool:
    return isinstance(outcome, grpc.aio.AioRpcError) and outcome.code() == grpc.StatusCode.NOT_FOUND


async def _merged(calls: dict[str, Any], firsts: Sequence[object]) -> AsyncIterator[str]:
    """Every job's current state, then each job's changes as they come, until all are final; a
    backend cut ends the stream (the client reconnects)."""
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    pumps: list[asyncio.Task[None]] = []
    opening = [f"retry: {RECONNECT_MS}\n\n"]
    try:
        for (job_id, call), first in zip(calls.items(), firsts, strict=True):
            if _missing(first):
                opening.append(f"event: {MISSING}\ndata: {json.dumps({'id': job_id}, separators=(',', ':'))}\n\n")
            elif isinstance(first, jobs_pb2.JobEvent):
                opening.append(_frame(first))
                if not _final(first):
                    pumps.append(asyncio.create_task(_pump(job_id, call, queue), name=f"sse-{job_id}"))
        yield "".join(opening)
        async for frame in changes(queue, len(pumps)):
            yield frame
    finally:
        _cancel([*pumps, *calls.values()])


async def changes(
    queue: asyncio.Queue[tuple[str, object]], following: int, keepalive: float = KEEPALIVE_SECONDS
) -> AsyncIterator[str]:
    """The frames of the pumps' events until each of following jobs ended, and a keep-alive
    whenever keepalive seconds passed without a frame (the calls' own keep-alives are dropped)."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    while following:
        try:
            async with asyncio.timeout_at(sent + keepalive):
                job_id, item = await queue.get()
        except TimeoutError:
            sent = loop.time()
            yield ": keep-alive\n\n"
            continue
        if item is END:
            following -= 1
        elif isinstance(item, grpc.aio.AioRpcError):
            log.info("sse.backend_ended", code=item.code().name, job_id=job_id)
            return
        elif isinstance(item, jobs_pb2.JobEvent) and item.HasField("job"):
            sent = loop.time()
            yield _frame(item)


async def _pump(job_id: str, call: Any, queue: asyncio.Queue[tuple[str, object]]) -> None:
    """Puts the call's events on queue, then END (or the error that cut it)."""
    try:
        while isinstance(event := await call.read(), jobs_pb2.JobEvent):
            queue.put_nowait((job_id, event))
        queue.put_nowait((job_id, END))
    except grpc.aio.AioRpcError as error:
        queue.put_nowait((job_id, error))


def _cancel(work: Iterable[Any]) -> None:
    for item in work:
        item.cancel()


def _final(event: jobs_pb2.JobEvent) -> bool:
    return event.HasField("job") and event.job.status in FINAL_PROTO


def _frame(event: jobs_pb2.JobEvent) -> str:
    return f"event: {event.type}\ndata: {event_data(event.job)}\n\n"
