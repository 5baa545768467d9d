"""Signed media URLs: the jobs service signs `/media/<key>` for a while, the gateway checks it.

A URL carries `expires` (Unix seconds) and `signature`, the unpadded URL-safe base64 of
HMAC-SHA256 over `<key>\\n<expires>`, keyed with the MEDIA_URLS key derived from SECRET_KEY. Every
answer that carries a job signs afresh, as S3 presigning does; the stored result keeps the bare
path, so that no signature ever lives in the database.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from typing import Literal

from services.core.secrets import MEDIA_URLS, derive, urlsafe
from services.core.settings import MAX_TTL_SECONDS, CoreSettings

# How far the clocks of the jobs service that signs and the gateway that checks may disagree.
CLOCK_SKEW_SECONDS = 300
# The names of the two query parameters.
EXPIRES = "expires"
SIGNATURE = "signature"
# The canonical decimal form only (no sign, no leading zero), so that one expiry has one spelling.
_EXPIRES = re.compile(r"0|[1-9][0-9]{0,11}")
_SIGNATURE = re.compile(r"[A-Za-z0-9_-]{43}")

Reason = Literal["unsigned", "bad_expiry", "bad_signature", "expired"]
# What a refusal tells the client: which rule, nothing about the key or the expected signature.
_MESSAGES: dict[Reason, str] = {
    "unsigned": "this media URL is not signed: GET the job again and use its result.videoUrl",
    "bad_expiry": "this media URL's `expires` is not a valid expiry time",
    "bad_signature": "this media URL's signature does not match it",
    "expired": "this media URL has expired: GET the job again for a fresh result.videoUrl",
}


class MediaUrlRefused(Exception):
    """A media URL that must not be served; `reason` says which rule it broke."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(_MESSAGES[reason])
        self.reason = reason


@dataclass(frozen=True)
class MediaUrlSigner:
    """Signs and checks the query of a media URL with one key, valid for ttl_seconds."""

    key: bytes = field(repr=False)
    ttl_seconds: int = 3600

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> MediaUrlSigner:
        """The signer of SECRET_KEY's MEDIA_URLS key and MEDIA_URL_TTL_SECONDS."""
        key = derive(settings.secret_key.get_secret_value(), MEDIA_URLS)
        return cls(key=key, ttl_seconds=settings.media_url_ttl_seconds)

    def signature(self, key: str, expires: int) -> str:
        """The signature of key's URL that expires at `expires` (Unix seconds)."""
        message = f"{key}\n{expires}".encode()
        return urlsafe(hmac.new(self.key, message, hashlib.sha256).digest())

    def sign(self, key: str, *, now: float | None = None) -> str:
        """The query `expires=...&signature=...` of a URL of key, valid for ttl_seconds from now."""
        expires = int(time.time() if now is None else now) + self.ttl_seconds
        return f"{EXPIRES}={expires}&{SIGNATURE}={self.signature(key, expires)}"

    def check(self, key: str, *, expires: str | None, signature: str | None, now: float | None = None) -> int:
        """The expiry of a valid, unexpired signature of key; MediaUrlRefused otherwise."""
        if expires is None and signature is None:
            raise MediaUrlRefused("unsigned")
        now = time.time() if now is None else now
        expiry = _expiry(expires, now=now)
        if signature is None or not _SIGNATURE.fullmatch(signature):
            raise MediaUrlRefused("bad_signature")
        # Constant time: how much of a guess matches must not show in how long the answer takes.
        if not hmac.compare_digest(signature, self.signature(key, expiry)):
            raise MediaUrlRefused("bad_signature")
        if expiry <= now:
            raise MediaUrlRefused("expired")
        return expiry


def _expiry(expires: str | None, *, now: float) -> int:
    """expires as Unix seconds; MediaUrlRefused when absent, not canonical decimal, or further
    ahead than any signer makes one (the longest TTL, give or take the clocks' skew)."""
    if expires is None or not _EXPIRES.fullmatch(expires):
        raise MediaUrlRefused("bad_expiry")
    expiry = int(expires)
    if expiry > now + MAX_TTL_SECONDS + CLOCK_SKEW_SECONDS:
        raise MediaUrlRefused("bad_expiry")
    return expiry
