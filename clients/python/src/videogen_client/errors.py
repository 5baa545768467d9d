"""What the client raises: one class per kind of answer a caller handles differently."""

from __future__ import annotations

from typing import Any


class VideoGenError(Exception):
    """Any failure of the client."""


class ApiError(VideoGenError):
    """The API answered an error: `status` and the body's `detail`."""

    def __init__(self, status: int, detail: Any, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body


class Unauthorized(ApiError):
    """401: no valid X-API-Key."""


class Forbidden(ApiError):
    """403: the key may not do this."""


class NotFound(ApiError):
    """404: no such job (or not the key's user's)."""


class Invalid(ApiError):
    """422 (or 400): a field of the request is wrong; `detail` names it."""


class RateLimited(ApiError):
    """429: a rate limit or quota; `retry_after` seconds until trying again may succeed."""

    def __init__(self, status: int, detail: Any, body: Any = None, *, retry_after: float = 1.0) -> None:
        super().__init__(status, detail, body)
        self.retry_after = retry_after


class Unavailable(ApiError):
    """502, 503 or 504: a part of the system is down; the call may succeed later."""


class JobFailed(VideoGenError):
    """wait() or a download found the job failed or cancelled."""

    def __init__(self, job: Any) -> None:
        super().__init__(f"job {job.id} {job.status}: {job.error_message or ''}".rstrip(": "))
        self.job = job


class WebhookVerificationError(VideoGenError):
    """A webhook's signature or timestamp does not verify."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    422: Invalid,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


def error_for(status: int, body: Any, retry_after: str | None) -> ApiError:
    """The exception of an error answer."""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if status == 429:
        try:
            seconds = float(retry_after) if retry_after is not None else 1.0
        except ValueError:
            seconds = 1.0
        return RateLimited(status, detail, body, retry_after=seconds)
    return _BY_STATUS.get(status, ApiError)(status, detail, body)
