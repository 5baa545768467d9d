"""The rules of jobs: statuses, legal transitions and validation of what clients send."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from services.core import egress
from services.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.core.queues import queue_for
from services.core.webhooks import events_problem, url_problem

USER_ID = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
JOB_ID = re.compile(r"[a-z0-9]{1,32}")
# A stored video: the job's id, its attempt when not the first, and a video extension.
STORAGE_KEY = re.compile(r"(?P<job>[a-z0-9]{1,32})(?:-(?P<attempt>[1-9][0-9]?))?\.(?:mp4|webm|mov)")
# Deeper JSON cannot be answered by the REST gateway (its serializer recurses); it is refused.
JSON_MAX_DEPTH = 64
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
PROMPT_MAX_CHARS = 4000
ERROR_MAX_CHARS = 4000
TAKE_DEFAULT, TAKE_MAX = 20, 100
TELEMETRY_MAX_POINTS = 500
RETRY_AFTER_MAX_SECONDS = 86_400
TELEMETRY_COMPONENTS = frozenset({"api", "worker", "database", "provider"})
_NOT_PUBLIC_NAME = "must name a host that resolves, and only to public addresses"


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})
FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobNotFound(NotFound):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")


class IllegalTransition(FailedPrecondition):
    """The job's status does not allow the requested move."""

    def __init__(self, job_id: str, action: str, status: str) -> None:
        super().__init__(f"cannot {action} job {job_id!r}: it is {status}")
        self.status = status


class IdempotencyConflict(AlreadyExists):
    """The idempotency key was used before with a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency_key: {key!r} was used with a different request")


class StaleAttempt(FailedPrecondition):
    """The caller works on an attempt the job has moved past (it was handed to another worker)."""

    def __init__(self, job_id: str, attempt: int, current: int) -> None:
        super().__init__(f"job {job_id!r} is on attempt {current + 1}, not {attempt + 1}")


class RetriesExhausted(FailedPrecondition):
    """The job has used all its retries."""

    def __init__(self, job_id: str, max_retries: int) -> None:
        super().__init__(f"cannot retry job {job_id!r}: all {max_retries} retries are used")


@dataclass(frozen=True)
class NewJob:
    """A validated request to create a job."""

    user_id: str
    prompt: str
    metadata: dict[str, Any]
    max_retries: int
    queue: str
    # The client's Idempotency-Key (None without one).
    idempotency_key: str | None = None
    # Where status changes are POSTed, and which events (empty: all).
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """A digest of what the request asks, to tell a replay from a different request."""
        asked: list[Any] = [self.prompt, self.metadata, self.max_retries]
        if self.webhook_url is not None:
            # Only then, so that the digests of jobs without a webhook stay what they were.
            asked.append([self.webhook_url, sorted(self.webhook_events)])
        canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class JobLimits:
    """Limits of the jobs API, from settings."""

    default_max_retries: int = 3
    list_max_skip: int = 100_000
    metadata_max_bytes: int = 16 * 1024


@dataclass(frozen=True)
class JobFilter:
    """A validated list query."""

    user_id: str | None
    status: JobStatus | None
    skip: int
    take: int


def validate_user_id(value: str, field: str = "user_id") -> str:
    """1-128 characters of [A-Za-z0-9_.:@-]."""
    if not USER_ID.fullmatch(value):
        raise InvalidArgument(field, "must be 1-128 characters of [A-Za-z0-9_.:@-]")
    return value


def validate_prompt(value: str) -> str:
    """1-4000 characters, not blank, no NUL."""
    if not value.strip():
        raise InvalidArgument("prompt", "must not be blank")
    if len(value) > PROMPT_MAX_CHARS:
        raise InvalidArgument("prompt", f"must be at most {PROMPT_MAX_CHARS} characters")
    if "\x00" in value:
        raise InvalidArgument("prompt", "must not contain NUL characters")
    return value


def parse_json_object(text: str, *, field: str, max_bytes: int) -> dict[str, Any]:
    """A JSON object of at most max_bytes that PostgreSQL's jsonb can store; "" means {}."""
    if not text.strip():
        return {}
    if len(text) > 4 * max_bytes:
        raise InvalidArgument(field, f"must be at most {max_bytes} bytes of JSON")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(field, f"must be valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    if _depth(value) > JSON_MAX_DEPTH:
        raise InvalidArgument(field, f"must be nested at most {JSON_MAX_DEPTH} deep")
    try:
        encoded = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        raise InvalidArgument(field, "must be valid UTF-8 JSON") from None
    if len(encoded) > max_bytes:
        raise InvalidArgument(field, f"must be at most {max_bytes} bytes of JSON")
    if b"\\u0000" in encoded or b"\x00" in encoded:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in value ({} is 1), without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def validate_idempotency_key(value: str) -> str | None:
    """None for no key; else 1-255 visible ASCII characters."""
    if value == "":
        return None
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidArgument("idempotency_key", "must be 1-255 visible ASCII characters")
    return value


def validate_new_job(
    *,
    user_id: str,
    prompt: str,
    metadata_json: str,
    max_retries: int | None,
    limits: JobLimits,
    idempotency_key: str = "",
    webhook_url: str | None = None,
    webhook_events: list[str] | None = None,
) -> NewJob:
    """Checks every field of a create request, naming the first wrong one."""
    metadata = parse_json_object(metadata_json, field="metadata", max_bytes=limits.metadata_max_bytes)
    provider = metadata.get("provider")
    if provider is not None and not (isinstance(provider, str) and PROVIDER_NAME.fullmatch(provider)):
        raise InvalidArgument("metadata.provider", 'must be a provider name such as "local"')
    retries = limits.default_max_retries if max_retries is None else max_retries
    if not 0 <= retries <= 10:
        raise InvalidArgument("max_retries", "must be between 0 and 10")
    return NewJob(
        user_id=validate_user_id(user_id),
        prompt=validate_prompt(prompt),
        metadata=metadata,
        max_retries=retries,
        queue=queue_for(metadata),
        idempotency_key=validate_idempotency_key(idempotency_key),
        webhook_url=validate_webhook_url(webhook_url),
        webhook_events=validate_webhook_events(webhook_events or [], webhook_url=webhook_url),
    )


def validate_webhook_url(value: str | None) -> str | None:
    """None for no webhook; else an absolute http(s) URL with a host, no credentials, <= 2048 chars."""
    if value is None:
        return None
    if (problem := url_problem(value)) is not None:
        raise InvalidArgument("webhook_url", problem)
    return value


async def validate_webhook_target(url: str | None, rules: egress.Egress) -> None:
    """Unless private targets are allowed, the URL's host is, and resolves only to, public
    addresses (the sender checks again at every attempt). A name gets one answer whether it does
    not resolve or resolves to a private address, so that clients cannot map internal names."""
    if url is None or rules.allow_private:
        return
    host = urlsplit(url).hostname or ""
    try:
        await rules.addresses(host)
    except egress.ForbiddenAddress as exc:
        if egress.literal(host) is not None:
            raise InvalidArgument("webhook_url", f"must be a public address; {exc}") from None
        raise InvalidArgument("webhook_url", _NOT_PUBLIC_NAME) from None
    except egress.Unresolvable:
        raise InvalidArgument("webhook_url", _NOT_PUBLIC_NAME) from None


def validate_webhook_events(values: list[str], *, webhook_url: str | None) -> tuple[str, ...]:
    """A filter of distinct known event names; only with a webhook URL."""
    if values and webhook_url is None:
        raise InvalidArgument("webhook_events", "needs webhook_url")
    if (problem := events_problem(values)) is not None:
        raise InvalidArgument("webhook_events", problem)
    return tuple(values)


@dataclass(frozen=True)
class Page:
    """A validated page request."""

    skip: int
    take: int


def validate_page(skip: int, take: int | None, *, max_skip: int) -> Page:
    """0 <= skip <= max_skip and 1 <= take <= 100 (20 when absent)."""
    if not 0 <= skip <= max_skip:
        raise InvalidArgument("skip", f"must be between 0 and {max_skip}")
    page = TAKE_DEFAULT if take is None else take
    if not 1 <= page <= TAKE_MAX:
        raise InvalidArgument("take", f"must be between 1 and {TAKE_MAX}")
    return Page(skip=skip, take=page)


def validate_filter(
    *, user_id: str | None, status: JobStatus | None, skip: int, take: int | None, limits: JobLimits
) -> JobFilter:
    """Checks a list query: user id shape, 0 <= skip <= the limit, 1 <= take <= 100."""
    if user_id is not None:
        validate_user_id(user_id)
    page = validate_page(skip, take, max_skip=limits.list_max_skip)
    return JobFilter(user_id=user_id, status=status, skip=page.skip, take=page.take)


def checked_job_id(value: str) -> str:
    """The id, or JobNotFound at once when it cannot be a job's id."""
    if not JOB_ID.fullmatch(value):
        raise JobNotFound(value[:64])
    return value


def validate_error_message(value: str, field: str = "error_message") -> str:
    """1-4000 characters, no NUL."""
    if not value.strip():
        raise InvalidArgument(field, "must not be blank")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value[:ERROR_MAX_CHARS]


def validate_progress(percent: int, stage: str) -> tuple[int, str]:
    """0-100 and a stage name of at most 64 characters."""
    if not 0 <= percent <= 100:
        raise InvalidArgument("percent", "must be between 0 and 100")
    if len(stage) > 64 or "\x00" in stage:
        raise InvalidArgument("stage", "must be at most 64 characters")
    return percent, stage


def validate_finite(value: float, field: str) -> float:
    """A finite number."""
    if not math.isfinite(value):
        raise InvalidArgument(field, "must be a finite number")
    return value


def validate_storage_key(key: str, *, job_id: str, attempt: int | None) -> str:
    """The key of a job's video names that job, and the attempt when one is given: "<job id>.mp4"
    for the first attempt, "<job id>-<n>.mp4" for attempt n. A worker cannot complete a job with
    another job's file (nor a stale attempt with its successor's)."""
    match = STORAGE_KEY.fullmatch(key)
    if match is None or match["job"] != job_id:
        raise InvalidArgument("result.storage_key", "must name the job's own video (<job id>[-<attempt>].<ext>)")
    named = int(match["attempt"] or 0)
    if attempt is not None and named != attempt:
        raise InvalidArgument("result.storage_key", f"must be the video of attempt {attempt}, not {named}")
    return key


def validate_video_result(
    *,
    job_id: str,
    attempt: int | None,
    video_url: str,
    content_type: str,
    duration_seconds: float,
    width: int,
    height: int,
    fps: float,
    size_bytes: int,
    storage_key: str,
    codec: str = "",
) -> dict[str, Any]:
    """The result JSON of a completed job, in the contract's camelCase shape."""
    if not video_url or len(video_url) > 2048:
        raise InvalidArgument("result.video_url", "must be 1-2048 characters")
    if not content_type or len(content_type) > 128:
        raise InvalidArgument("result.content_type", "must be 1-128 characters")
    for field, number in (("duration_seconds", duration_seconds), ("fps", fps)):
        if not (math.isfinite(number) and number > 0):
            raise InvalidArgument(f"result.{field}", "must be a positive number")
    for field, size in (("width", width), ("height", height)):
        if size <= 0:
            raise InvalidArgument(f"result.{field}", "must be positive")
    if size_bytes < 0:
        raise InvalidArgument("result.size_bytes", "must not be negative")
    validate_storage_key(storage_key, job_id=job_id, attempt=attempt)
    if len(codec) > 32 or not codec.isprintable():
        raise InvalidArgument("result.codec", "must be at most 32 printable characters")
    if not video_url.endswith(f"/{storage_key}"):
        raise InvalidArgument("result.video_url", "must be the URL of result.storage_key")
    return {
        "videoUrl": video_url,
        "contentType": content_type,
        "durationSeconds": duration_seconds,
        "width": width,
        "height": height,
        "fps": fps,
        "sizeBytes": size_bytes,
        "storageKey": storage_key,
        **({"codec": codec} if codec else {}),
    }


def validate_label(value: str, *, field: str, max_chars: int) -> str:
    """1-max_chars printable characters (a worker id, a provider or model name)."""
    if not value or len(value) > max_chars or not value.isprintable():
        raise InvalidArgument(field, f"must be 1-{max_chars} printable characters")
    return value


def non_negative(value: int, field: str) -> int:
    """value, unless it is negative."""
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    return value


def validate_cost(value: float) -> float:
    """A cost in US dollars: finite, 0 or more, below a million."""
    if not (math.isfinite(value) and 0 <= value < 1_000_000):
        raise InvalidArgument("cost_usd", "must be between 0 and 1000000")
    return value
