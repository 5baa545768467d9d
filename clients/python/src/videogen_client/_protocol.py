"""What the sync and async clients share: how each call is asked and read, when to ask again,
and the reading of a Server-Sent Events stream. No I/O here."""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from videogen_client.errors import ApiError, RateLimited, Unavailable, error_for
from videogen_client.models import Job, JobEvent

DEFAULT_URL = "http://localhost:8000"
USER_AGENT = "videogen-client/0.1"
# Answers worth asking again (the request changed nothing, or it is safe to repeat).
RETRY_STATUSES = frozenset({429, 502, 503, 504})
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 8.0


@dataclass(frozen=True)
class Call:
    """One API call, before any transport: safe to repeat when idempotent (a create is, with its
    Idempotency-Key)."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True


def settings(base_url: str | None, api_key: str | None) -> tuple[str, dict[str, str]]:
    """The base URL and the headers of every call (VIDEOGEN_URL and VIDEOGEN_API_KEY when unset)."""
    url = (base_url or os.environ.get("VIDEOGEN_URL") or DEFAULT_URL).rstrip("/")
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    key = api_key if api_key is not None else os.environ.get("VIDEOGEN_API_KEY")
    if key:
        headers["X-API-Key"] = key
    return url, headers


def create_call(
    prompt: str,
    *,
    user_id: str | None,
    metadata: dict[str, Any] | None,
    max_retries: int | None,
    webhook_url: str | None,
    webhook_events: list[str] | None,
    idempotency_key: str | None,
) -> Call:
    """POST /api/v1/jobs, with an Idempotency-Key (a new one unless given), so that a retry after a
    lost answer creates the job once."""
    body: dict[str, Any] = {"prompt": prompt}
    for name, value in (
        ("userId", user_id),
        ("metadata", metadata),
        ("maxRetries", max_retries),
        ("webhookUrl", webhook_url),
        ("webhookEvents", webhook_events),
    ):
        if value is not None:
            body[name] = value
    key = idempotency_key or uuid.uuid4().hex
    return Call("POST", "/api/v1/jobs", body=body, headers={"Idempotency-Key": key})


def list_call(*, user_id: str | None, status: str | None, take: int, cursor: str | None, skip: int) -> Call:
    params: dict[str, Any] = {"take": take}
    for name, value in (("userId", user_id), ("status", status), ("cursor", cursor)):
        if value is not None:
            params[name] = value
    if skip:
        params["skip"] = skip
    return Call("GET", "/api/v1/jobs", params=params)


def job_path(job_id: str) -> str:
    if not job_id or "/" in job_id:
        raise ValueError(f"not a job id: {job_id!r}")
    return f"/api/v1/jobs/{job_id}"


def read(status: int, content: bytes, retry_after: str | None) -> Any:
    """The JSON of a 2xx answer (None for 204); the error of any other."""
    body: Any = None
    if content:
        try:
            body = json.loads(content)
        except ValueError:
            body = content.decode(errors="replace")
    if 200 <= status < 300:
        return body
    raise error_for(status, body, retry_after)


def pause_before(attempt: int, error: Exception) -> float:
    """Seconds to wait before asking again: a 429's Retry-After, else doubling with jitter."""
    if isinstance(error, RateLimited):
        return float(min(LONGEST_PAUSE * 4, max(0.0, error.retry_after)))
    ceiling = min(LONGEST_PAUSE, FIRST_PAUSE * 2.0**attempt)
    return ceiling / 2 + random.random() * ceiling / 2


def worth_retrying(error: Exception, call: Call) -> bool:
    """A rate limit or an unavailable backend, for any call; a lost connection, for a call that
    is safe to repeat."""
    if isinstance(error, ApiError):
        return isinstance(error, RateLimited | Unavailable)
    return call.idempotent


class EventParser:
    """Server-Sent Events, line by line: each complete event's (type, id, data)."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self._type = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> JobEvent | None:
        """One line without its end; the event a blank line completes, if any."""
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def _dispatch(self) -> JobEvent | None:
        kind, data, event_id = self._type, self._data, self._id
        self._type, self._data, self._id = "", [], None
        if event_id is not None:
            self.last_id = event_id
        if not data:
            return None
        job = Job.from_json(json.loads("\n".join(data)))
        return JobEvent(type=kind or "message", id=int(event_id) if event_id and event_id.isdigit() else None, job=job)


def events_of(lines: Iterator[str], parser: EventParser) -> Iterator[JobEvent]:
    for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event


def until(lines: Iterator[str], deadline: float | None) -> Iterator[str]:
    """The lines of a stream, and TimeoutError once a line comes after the deadline."""
    for line in lines:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("the job was not final in time")
        yield line
