"""Verifying a webhook delivery (Standard Webhooks, docs/webhooks.md) without another library."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from videogen_client.errors import WebhookVerificationError
from videogen_client.models import Job

TOLERANCE_SECONDS = 300


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not whsec_ followed by base64") from None


def verify_webhook(
    body: bytes | str, headers: Mapping[str, str], secret: str, *, now: float | None = None
) -> tuple[str, Job]:
    """The event's type and job, once the signature verifies with secret (`whsec_...`, from
    GET /api/v1/webhooks/secret) and the timestamp is within five minutes;
    WebhookVerificationError otherwise. Headers are read case-insensitively."""
    lower = {name.lower(): value for name, value in headers.items()}
    try:
        message_id, stamp, signatures = (
            lower["webhook-id"],
            lower["webhook-timestamp"],
            lower["webhook-signature"],
        )
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    try:
        sent = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    if abs((time.time() if now is None else now) - sent) > TOLERANCE_SECONDS:
        raise WebhookVerificationError("webhook-timestamp is more than five minutes away")
    raw = body.encode() if isinstance(body, str) else body
    expected = base64.b64encode(
        hmac.new(_key(secret), f"{message_id}.{stamp}.".encode() + raw, hashlib.sha256).digest()
    ).decode()
    offered = [part.partition(",")[2] for part in signatures.split() if part.startswith("v1,")]
    if not any(hmac.compare_digest(expected, signature) for signature in offered):
        raise WebhookVerificationError("no signature verifies")
    event: dict[str, Any] = json.loads(raw)
    return event["type"], Job.from_json(event["data"])
