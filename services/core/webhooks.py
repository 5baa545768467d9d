"""The rules of job webhooks shared by the gateway and the jobs service: events, URLs, signatures.

Deliveries follow Standard Webhooks (https://www.standardwebhooks.com): the body is
`{"type", "timestamp", "data"}`, and the headers `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, one signature per
active secret (docs/webhooks.md shows how to verify them).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationInfo

from services.core.models import WEBHOOK_EVENTS
from services.core.secrets import WEBHOOK_SIGNING, derive, secret_problem

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
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
USER_AGENT = "videogen-webhooks/2"
_FORBIDDEN_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")

# WEBHOOK_SECRET: one or two secrets (current first, then the previous one while receivers move
# over), each `whsec_` + standard base64 of 24-64 random bytes, as Standard Webhooks serializes them.
SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES = 24
SECRET_MAX_BYTES = 64
MAX_SECRETS = 2
_SECRET_SEPARATORS = re.compile(r"[\s,]+")
_SECRET_FORMAT = (
    f"must be one or two secrets separated by a space or comma, each {SECRET_PREFIX} followed by the "
    f"standard base64 (with = padding) of {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} random bytes, for instance "
    f'"{SECRET_PREFIX}$(openssl rand -base64 32)"'
)


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


def parse_secrets(value: str) -> list[bytes]:
    """The signing keys of a WEBHOOK_SECRET value, current first; ValueError saying what is
    wrong with it (never quoting it)."""
    entries = [entry for entry in _SECRET_SEPARATORS.split(value.strip()) if entry]
    if not 1 <= len(entries) <= MAX_SECRETS:
        raise ValueError(_SECRET_FORMAT)
    keys = []
    for entry in entries:
        if not entry.startswith(SECRET_PREFIX):
            raise ValueError(_SECRET_FORMAT)
        try:
            key = base64.b64decode(entry.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(_SECRET_FORMAT) from None
        if not SECRET_MIN_BYTES <= len(key) <= SECRET_MAX_BYTES:
            raise ValueError(_SECRET_FORMAT)
        keys.append(key)
    return keys


def _blank_is_unset(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _checked_secret_setting(value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
    if value is None:
        return None
    text = value.get_secret_value()
    parse_secrets(text)
    if info.data.get("app_env") == "production":
        for entry in _SECRET_SEPARATORS.split(text.strip()):
            # The base64 text of a real random key is long and varied; a typed-in one is not.
            if entry and (problem := secret_problem(entry.removeprefix(SECRET_PREFIX))) is not None:
                raise ValueError(f"{problem} when APP_ENV=production (or leave it unset)")
    return value


# The type of the WEBHOOK_SECRET setting: unset (or blank) means derived from SECRET_KEY.
WebhookSecretSetting = Annotated[
    SecretStr | None, BeforeValidator(_blank_is_unset), AfterValidator(_checked_secret_setting)
]


class SigningSettings(Protocol):
    """The settings webhook signing keys come from."""

    @property
    def secret_key(self) -> SecretStr: ...

    @property
    def webhook_secret(self) -> SecretStr | None: ...


def signing_keys(settings: SigningSettings) -> list[bytes]:
    """The keys that sign every delivery, current first: WEBHOOK_SECRET's, or else the one
    derived from SECRET_KEY."""
    if settings.webhook_secret is not None:
        return parse_secrets(settings.webhook_secret.get_secret_value())
    return [derive(settings.secret_key.get_secret_value(), WEBHOOK_SIGNING)]


def signing_secrets(settings: SigningSettings) -> list[str]:
    """The signing secrets as receivers configure them (`whsec_…`), current first. Secret: for an
    admin's eyes only, never for a log."""
    return [SECRET_PREFIX + base64.b64encode(key).decode() for key in signing_keys(settings)]


def event_time(moment: datetime) -> str:
    """An event's time as the body's `timestamp`: ISO 8601 in UTC with microseconds."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def envelope(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
    """The body of a delivery, `{"type", "timestamp", "data"}` as compact UTF-8 JSON: the same
    bytes every time for the same delivery."""
    document = {"type": event_type, "timestamp": event_time(occurred_at), "data": data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def sign(keys: Sequence[bytes], *, event_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: `v1,<base64>` per key, separated by spaces."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys)


def request_headers(keys: Sequence[bytes], *, event_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt at timestamp (Unix seconds) to POST body."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(keys, event_id=event_id, timestamp=timestamp, body=body),
    }
