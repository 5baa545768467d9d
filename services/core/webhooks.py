"""The rules of job webhooks shared by the gateway and the jobs service: events, URLs, signatures.

A delivery POSTs the job's JSON with the headers below; the signature is
`v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>` (docs/webhooks.md shows how to verify it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import urlsplit

from services.core.models import WEBHOOK_EVENTS

# The job status each event reports; job.retrying is processing -> queued for another attempt.
EVENT_OF_STATUS = {
    "queued": "job.queued",
    "processing": "job.processing",
    "completed": "job.completed",
    "failed": "job.failed",
    "cancelled": "job.cancelled",
}
RETRYING = "job.retrying"
EVENTS = frozenset(WEBHOOK_EVENTS)
URL_MAX_CHARS = 2048
ID_HEADER = "Webhook-Id"
TIMESTAMP_HEADER = "Webhook-Timestamp"
SIGNATURE_HEADER = "Webhook-Signature"
EVENT_HEADER = "Webhook-Event"
USER_AGENT = "videogen-webhooks/1"
_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


def url_problem(url: str) -> str | None:
    """Why url cannot be a webhook URL (None when it can): an absolute http(s) URL with a host,
    at most 2048 characters, no credentials, no spaces or control characters."""
    if len(url) > URL_MAX_CHARS:
        return f"must be at most {URL_MAX_CHARS} characters"
    if _FORBIDDEN_CHARACTERS.search(url):
        return "must not contain spaces, backslashes or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"must be a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http or https URL"
    if not parts.hostname:
        return "must be an absolute URL with a host"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user or password"
    if port == 0:
        return "must not name port 0"
    return None


def events_problem(events: list[str]) -> str | None:
    """Why events cannot be an event filter (None when they can)."""
    unknown = [event for event in events if event not in EVENTS]
    if unknown:
        return f"unknown event {unknown[0]!r}; must be among {', '.join(WEBHOOK_EVENTS)}"
    if len(set(events)) != len(events):
        return "must not repeat an event"
    return None


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The Webhook-Signature header of body sent at timestamp (Unix seconds)."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def verify(secret: bytes, *, timestamp: str, body: bytes, header: str, now: float, tolerance: float = 300) -> bool:
    """Whether header signs body at timestamp with secret, and timestamp is within tolerance of now."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance:
        return False
    expected = signature(secret, sent, body)
    return any(hmac.compare_digest(expected, candidate.strip()) for candidate in header.split(" "))
