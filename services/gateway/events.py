"""GET /api/v1/jobs/{id}/events: one job's life as Server-Sent Events, streamed from WatchJob."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Header, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse

from services.core.job.public import job_from_proto
from services.core.logging import get_logger
from services.gateway.deps import BackendsDep, call_metadata
from services.gateway.errors import BackendError
from services.gateway.schemas import Problem, RateLimitProblem
from videogen.v1 import jobs_pb2

log = get_logger(__name__)
router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
EVENT_STREAM = "text/event-stream"
# How long an EventSource waits before it reconnects (with Last-Event-ID) after a cut.
RECONNECT_MS = 2000
_EXAMPLE = (
    f"retry: {RECONNECT_MS}\n\n"
    'id: 1\nevent: job.queued\ndata: {"id":"cm…","status":"queued","progressPercent":0,…}\n\n'
    'id: 2\nevent: job.processing\ndata: {"id":"cm…","status":"processing","progressStage":"starting",…}\n\n'
    'id: 3\nevent: job.progress\ndata: {"id":"cm…","status":"processing","progressPercent":40,…}\n\n'
    ": keep-alive\n\n"
    'id: 7\nevent: job.completed\ndata: {"id":"cm…","status":"completed","result":{"videoUrl":…},…}\n\n'
)
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The event id: the job's version"},
        "event": {
            "type": "string",
            "enum": [
                "job.queued",
                "job.processing",
                "job.progress",
                "job.retrying",
                "job.completed",
                "job.failed",
                "job.cancelled",
            ],
        },
        "data": {"type": "string", "contentMediaType": "application/json", "description": "The job, as GET answers it"},
        "retry": {"type": "integer", "minimum": 0},
    },
}
# What refuses a live stream before it starts, besides the client's own mistakes.
STREAM_REFUSALS: dict[int | str, dict[str, Any]] = {
    429: {
        "model": RateLimitProblem,
        "description": "The jobs service follows as many streams as it may",
        "headers": {
            "Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}
        },
    },
    503: {"model": Problem},
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The job's events as Server-Sent Events: `id` is the event id (the job's version), "
        "`event` its type (`job.queued`, `job.processing`, `job.progress`, `job.retrying`, `job.completed`, "
        "`job.failed`, `job.cancelled`) and `data` the job exactly as `GET /api/v1/jobs/{id}` answers it. "
        "The first event is the current state; the stream ends after a final state. Comment lines "
        "(`: keep-alive`) come while nothing changes.",
        # The schema of one event (as OpenAPI 3.2's itemSchema describes a stream's items).
        "content": {EVENT_STREAM: {"schema": EVENT_SCHEMA, "example": _EXAMPLE}},
    },
    204: {"description": "Nothing newer than `Last-Event-ID` will ever come: the job had ended (stop reconnecting)"},
    404: {"model": Problem},
    422: {"model": Problem},
    **STREAM_REFUSALS,
}


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses=RESPONSES,
    summary="Follow one job live (Server-Sent Events)",
)
async def job_events(
    job_id: str,
    backends: BackendsDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=r"^[0-9]{1,18}$",
            description="Resume: the `id` of the last event received. Only newer events are sent; "
            "EventSource sends it by itself when it reconnects.",
        ),
    ] = None,
) -> Response:
    """Streams the job's states until a final one, without polling (see docs/streaming.md)."""
    request = jobs_pb2.WatchJobRequest(id=job_id)
    if last_event_id is not None:
        request.after_event_id = int(last_event_id)
    call = backends.jobs.WatchJob(request, metadata=call_metadata())
    try:
        # The first event (or the refusal) before any byte is sent: errors keep their status.
        first = await call.read()
    except grpc.aio.AioRpcError as error:
        raise BackendError(error, "jobs") from None
    if not isinstance(first, jobs_pb2.JobEvent):  # the end of the stream: nothing newer will come
        return Response(status_code=204)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(call, first), media_type=EVENT_STREAM, headers=headers)


async def _stream(call: Any, first: jobs_pb2.JobEvent) -> AsyncIterator[str]:
    """The SSE text of each event; a cut of the backend ends the stream (the client resumes)."""
    try:
        yield f"retry: {RECONNECT_MS}\n\n" + _frame(first)
        while isinstance(event := await call.read(), jobs_pb2.JobEvent):
            yield _frame(event)
    except grpc.aio.AioRpcError as error:
        log.info("sse.backend_ended", code=error.code().name)
    finally:
        call.cancel()


def _frame(event: jobs_pb2.JobEvent) -> str:
    if not event.HasField("job"):
        return ": keep-alive\n\n"
    return f"id: {event.event_id}\nevent: {event.type}\ndata: {event_data(event.job)}\n\n"


def event_data(job: jobs_pb2.Job) -> str:
    """The job as GET answers it, on one line: an event's data."""
    return json.dumps(jsonable_encoder(job_from_proto(job)), separators=(",", ":"), ensure_ascii=False)
