"""Secrets: what production refuses, and the keys derived from SECRET_KEY.

Each derived key is HKDF-SHA256 (RFC 5869) of SECRET_KEY with its own `info` label, so that one
key leaking (a receiver's webhook secret, say) tells nothing about SECRET_KEY or the others, and
rotating SECRET_KEY rotates them all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable

# Production secrets are at least this long (32 random characters carry well over 128 bits).
MIN_SECRET_CHARS = 32
# Words that mark a value as a placeholder rather than a secret, compared on the value's letters
# and digits in lower case ("REPLACE_ME", "change-me", "your-api-key-here", ...).
_PLACEHOLDER_WORDS = (
    "changeme",
    "replaceme",
    "placeholder",
    "example",
    "yoursecret",
    "yourapikey",
    "yourkey",
    "insecure",
    "notasecret",
    "dummy",
    "secretkey",
    "apikey",
    "password",
)
# Fewer distinct characters than this is a pattern ("aaaa…", "1234…"), not a random secret.
_MIN_DISTINCT_CHARS = 8
_NOT_ALNUM = re.compile(r"[^a-z0-9]")

# The purposes of the keys derived from SECRET_KEY: one label each, never reused.
WEBHOOK_SIGNING = b"videogen/webhook-signing/v1"
MEDIA_URLS = b"videogen/media-urls/v1"
SERVICE_TOKEN = b"videogen/service-token/v1"
LIST_CURSORS = b"videogen/list-cursors/v1"


def secret_problem(value: str, *, examples: Iterable[str] = ()) -> str | None:
    """Why value cannot be a production secret (None when it can): unset, shorter than 32
    characters, one of the examples, a placeholder, or a pattern."""
    if not value:
        return "must be set"
    if value in set(examples):
        return "must not be the example value of .env.example"
    letters = _NOT_ALNUM.sub("", value.lower())
    if any(word in letters for word in _PLACEHOLDER_WORDS):
        return "must be a real secret, not a placeholder"
    if len(value) < MIN_SECRET_CHARS:
        return f"must be at least {MIN_SECRET_CHARS} characters (for instance `openssl rand -hex 32`)"
    if len(set(value)) < _MIN_DISTINCT_CHARS:
        return "must be random, not a repeated pattern (for instance `openssl rand -hex 32`)"
    return None


def hkdf_sha256(key: bytes, *, info: bytes, length: int = 32, salt: bytes = b"") -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with salt, expand with info to length bytes."""
    if not 0 < length <= 255 * hashlib.sha256().digest_size:
        raise ValueError("length must be between 1 and 8160 bytes")
    pseudo_random = hmac.new(salt or bytes(hashlib.sha256().digest_size), key, hashlib.sha256).digest()
    output, block, counter = b"", b"", 1
    while len(output) < length:
        block = hmac.new(pseudo_random, block + info + bytes([counter]), hashlib.sha256).digest()
        output += block
        counter += 1
    return output[:length]


def derive(secret_key: str, purpose: bytes) -> bytes:
    """The 32-byte key of one purpose, derived from SECRET_KEY."""
    return hkdf_sha256(secret_key.encode(), info=purpose)


def urlsafe(data: bytes) -> str:
    """data as unpadded URL-safe base64 (fits in headers, query strings and metadata)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
