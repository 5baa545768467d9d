"""The job's input image (metadata.imageUrl), fetched by the worker itself for a ComfyUI server,
which cannot fetch it: an https URL of a public host, at most MAX_IMAGE_BYTES, a real image."""

from __future__ import annotations

import io
import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from services.core.providers.base import InvalidOptions, ProviderError

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_REDIRECTS = 3
FORMATS = {"PNG": ("png", "image/png"), "JPEG": ("jpg", "image/jpeg"), "WEBP": ("webp", "image/webp")}


@dataclass(frozen=True)
class InputImage:
    """A fetched image: its bytes, file extension and content type."""

    data: bytes
    extension: str
    content_type: str


def check_image_url(url: str, *, private: bool = False) -> None:
    """InvalidOptions unless url is one we would fetch (https; http too when private is allowed)."""
    parts = urlsplit(url)
    schemes = ("https", "http") if private else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise InvalidOptions("metadata.imageUrl must be an https URL")


def fetch_image(url: str, deadline: float, *, private: bool = False) -> InputImage:
    """Downloads the image, following a few redirects, each to a public address unless private
    is allowed (so a job cannot make the worker read an internal service); InvalidOptions when
    the URL gives no image we can use, ProviderError when the fetch itself fails."""
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            check_image_url(url, private=private)
            if not private:
                _refuse_private_host(urlsplit(url).hostname or "")
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProviderError("fetching metadata.imageUrl: timed out")
            try:
                with client.stream("GET", url, timeout=min(left, 60.0)) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code >= 400:
                        raise InvalidOptions(f"metadata.imageUrl could not be fetched: HTTP {response.status_code}")
                    data = _read(response)
            except httpx.HTTPError as exc:
                raise ProviderError(f"fetching metadata.imageUrl: {type(exc).__name__}") from None
            return _identified(data)
    raise InvalidOptions(f"metadata.imageUrl redirects more than {MAX_REDIRECTS} times")


def _refuse_private_host(host: str) -> None:
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        raise InvalidOptions(f"metadata.imageUrl: the host {host!r} is unknown") from None
    if not all(ipaddress.ip_address(address.split("%")[0]).is_global for address in addresses):
        raise InvalidOptions("metadata.imageUrl must point at a public host")


def _read(response: httpx.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_bytes(1 << 16):
        size += len(chunk)
        if size > MAX_IMAGE_BYTES:
            raise InvalidOptions(f"metadata.imageUrl is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _identified(data: bytes) -> InputImage:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            kind = image.format or ""
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        kind = ""
    if kind not in FORMATS:
        raise InvalidOptions("metadata.imageUrl is not a PNG, JPEG or WebP image")
    extension, content_type = FORMATS[kind]
    return InputImage(data=data, extension=extension, content_type=content_type)
