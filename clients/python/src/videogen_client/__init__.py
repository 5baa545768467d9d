"""The VideoGen API from Python: `Client` (and `AsyncClient`) to submit jobs, follow them and fetch
their videos; `verify_webhook` for the deliveries; the `videogen` command line."""

from videogen_client.aio import AsyncClient
from videogen_client.client import Client
from videogen_client.errors import (
    ApiError,
    Forbidden,
    Invalid,
    JobFailed,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    VideoGenError,
    WebhookVerificationError,
)
from videogen_client.models import Job, JobAttempt, JobEvent, JobPage, ProviderStatus, VideoResult
from videogen_client.webhooks import verify_webhook

__all__ = [
    "ApiError",
    "AsyncClient",
    "Client",
    "Forbidden",
    "Invalid",
    "Job",
    "JobAttempt",
    "JobEvent",
    "JobFailed",
    "JobPage",
    "NotFound",
    "ProviderStatus",
    "RateLimited",
    "Unauthorized",
    "Unavailable",
    "VideoGenError",
    "VideoResult",
    "WebhookVerificationError",
    "verify_webhook",
]
