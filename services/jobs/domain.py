"""The rules of jobs: statuses, legal transitions and validation of what clients send."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from services.core import egress
from services.core.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from services.core.job.options import JobOptions
from services.core.job.rules import (
    DEFAULT_MAX_RETRIES,
    ERROR_MAX_CHARS,
    JOB_ID,
    LIST_MAX_SKIP,
    METADATA_MAX_BYTES,
    TAKE_DEFAULT,
    TAKE_MAX,
    parse_json_object,
    validate_idempotency_key,
    validate_max_retries,
    validate_prompt,
    validate_user_id,
)
from services.core.job.status import JobStatus
from services.core.webhooks import events_problem, url_problem

TELEMETRY_MAX_POINTS = 500
RETRY_AFTER_MAX_SECONDS = 86_400
TELEMETRY_COMPONENTS = frozenset({"api", "worker", "database", "provider"})
_NOT_PUBLIC_NAME = "must name a host that resolves, and only to public addresses"


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
    # The client's object, answered back as sent, and the options of it that steer the job.
    metadata: dict[str, Any]
    options: JobOptions
    max_retries: int
    # The client's Idempotency-Key (None without one).
    idempotency_key: str | None = None
    # Where status changes are POSTed, and which events (empty: all).
    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ()
    # The creating request's trace context (tracing on only): not part of what the request asks.
    traceparent: str | None = None

    @property
    def queue(self) -> str:
        """The Celery queue its priority names."""
        return self.options.queue

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

    default_max_retries: int = DEFAULT_MAX_RETRIES
    list_max_skip: int = LIST_MAX_SKIP
    metadata_max_bytes: int = METADATA_MAX_BYTES


@dataclass(frozen=True)
class ListPosition:
    """Where a page of a list ends: the sort key (newest first) of its last job."""

    created_at: datetime
    job_id: str


@dataclass(frozen=True)
class JobFilter:
    """A validated list query; with after, the page starts past that position (keyset)."""

    user_id: str | None
    status: JobStatus | None
    skip: int
    take: int
    after: ListPosition | None = None


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
    traceparent: str | None = None,
) -> NewJob:
    """Checks every field of a create request, naming the first wrong one (traceparent: the
    request's own trace context, from this process's tracing, not from the client)."""
    metadata = parse_json_object(metadata_json, field="metadata", max_bytes=limits.metadata_max_bytes)
    return NewJob(
        user_id=validate_user_id(user_id),
        prompt=validate_prompt(prompt),
        metadata=metadata,
        options=JobOptions.parse(metadata),
        max_retries=validate_max_retries(max_retries, default=limits.default_max_retries),
        idempotency_key=validate_idempotency_key(idempotency_key),
        webhook_url=validate_webhook_url(webhook_url),
        webhook_events=validate_webhook_events(webhook_events or [], webhook_url=webhook_url),
        traceparent=traceparent,
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


def continue_after(query: JobFilter, after: ListPosition) -> JobFilter:
    """The query's page right after a cursor's position; skip must be 0 then."""
    if query.skip != 0:
        raise InvalidArgument("skip", "must be 0 with a cursor: its page starts right after the cursor's job")
    return replace(query, after=after)


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
