"""The input image of an image-to-video job, fetched by us for servers that take it as an upload
(metadata.imageUrl: https only, from public addresses only, at most MAX_IMAGE_BYTES).

The URL is the client's, so fetching it is a request on the client's behalf into our network:
like a webhook (services/jobs/webhooks/post.py), each hop resolves the host, refuses any address
that is not public (services/core/egress.py), and connects to the checked address by number with
the host's name as Host and TLS server name. Failures name the field and a coarse reason, never
an exception's text (which could describe internal hosts to the client).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_address

import httpx

from services.core.egress import IPAddress, literal, refusal
from services.core.generators.base import InvalidOptions

FIELD = "metadata.imageUrl"
MAX_IMAGE_BYTES = 20 * 1024**2
IMAGE_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
MAX_REDIRECTS = 3
# Addresses of one name tried in turn when connecting fails.
MAX_ADDRESSES = 4
# A host name to its addresses (OSError when it has none); tests give their own.
Resolver = Callable[[str], list[IPAddress]]


def resolve(host: str) -> list[IPAddress]:
    """host's addresses from the system's resolver, in its order."""
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM):
        address = ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in found:
            found.append(address)
    return found


@dataclass(frozen=True)
class InputImage:
    """An image file to upload."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ImageFetcher:
    """Fetches input images: public https hosts only (unless allow_private, for tests)."""

    allow_private: bool = False
    resolver: Resolver = resolve
    verify: ssl.SSLContext | bool = True
    max_bytes: int = MAX_IMAGE_BYTES

    def fetch(self, url: str, *, deadline: float) -> InputImage:
        """The image at url (following a few redirects, each checked); InvalidOptions naming
        metadata.imageUrl when it cannot be had."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            raise InvalidOptions(f"{FIELD} is not a URL") from None
        with httpx.Client(verify=self.verify, follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                response = self._get(client, target, deadline)
                if response.is_redirect and "location" in response.headers:
                    target = target.join(response.headers["location"])
                    continue
                return self._image(response)
        raise InvalidOptions(f"{FIELD} could not be fetched: too many redirects")

    def _addresses(self, host: str) -> list[IPAddress]:
        fixed = literal(host)
        try:
            found = [fixed] if fixed is not None else self.resolver(host)
        except (OSError, UnicodeError):
            found = []
        if not found:
            raise InvalidOptions(f"{FIELD} could not be fetched: its host does not resolve")
        for address in found:
            if not self.allow_private and refusal(address) is not None:
                raise InvalidOptions(f"{FIELD} must be on a public address")
        return found

    def _get(self, client: httpx.Client, url: httpx.URL, deadline: float) -> _Fetched:
        if url.scheme != "https" or not url.host:
            raise InvalidOptions(f"{FIELD} must be an https URL")
        host = url.raw_host.decode("ascii")
        headers = {"Host": url.netloc.decode("ascii"), "User-Agent": "videogen", "Accept": "image/*"}
        reason = "connection error"
        for address in self._addresses(host)[:MAX_ADDRESSES]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                with client.stream(
                    "GET",
                    url.copy_with(host=str(address)),
                    headers=headers,
                    extensions={"sni_hostname": host},
                    timeout=left,
                ) as response:
                    return _Fetched.read(response, max_bytes=self.max_bytes, deadline=deadline)
            except httpx.TimeoutException:
                reason = "timed out"
                break
            except httpx.ConnectError as exc:
                reason = "TLS failed" if _tls_failure(exc) else "connection error"
            except httpx.HTTPError:
                reason = "connection error"
                break
        raise InvalidOptions(f"{FIELD} could not be fetched: {reason}")

    def _image(self, fetched: _Fetched) -> InputImage:
        if fetched.status >= 400 or fetched.status < 200:
            raise InvalidOptions(f"{FIELD} could not be fetched: HTTP {fetched.status}")
        content_type = fetched.content_type
        if content_type not in IMAGE_TYPES:
            raise InvalidOptions(f"{FIELD} must be a JPEG, PNG or WebP image")
        return InputImage(filename=f"input.{IMAGE_TYPES[content_type]}", content_type=content_type, data=fetched.body)


@dataclass(frozen=True)
class _Fetched:
    """One answer, read whole (it is at most max_bytes)."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308)

    @property
    def content_type(self) -> str:
        value: str = self.headers.get("content-type", "")
        return value.split(";")[0].strip().lower()

    @classmethod
    def read(cls, response: httpx.Response, *, max_bytes: int, deadline: float) -> _Fetched:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise InvalidOptions(f"{FIELD} is larger than {max_bytes} bytes")
        body = bytearray()
        if 200 <= response.status_code < 300:
            for chunk in response.iter_bytes(1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    raise InvalidOptions(f"{FIELD} is larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("deadline")
        return cls(status=response.status_code, headers=response.headers, body=bytes(body))


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError | ssl.CertificateError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
