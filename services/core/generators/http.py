"""What the remote provider kinds share: calls under a deadline that honour 429s, retries of
brief outages, errors that never carry a key, streaming downloads with a size cap, and the
check (with PyAV) that a download is a video.
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import av
import httpx

from services.core.generators.base import InvalidOptions, ProviderError, RenderedVideo
from services.core.generators.registry import ProviderConfig

# The longest a 429's Retry-After is waited for at once, and brief outages retried per call.
MAX_RETRY_AFTER = 60.0
TRANSIENT = frozenset({502, 503, 504})
TRANSIENT_RETRIES = 3
# Only these are repeated after a brief outage: a POST may have created (and billed) a task
# before its proxy answered 502, so a create is never sent twice.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# A download that fails (an expired URL, a cut connection) is tried this often within the attempt.
DOWNLOAD_ATTEMPTS = 3
# FFmpeg names a demuxer by every format it reads ("mov,mp4,m4a,..."): the first of these it names wins.
CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "matroska": "video/x-matroska"}
# Answers whose status means "this request is wrong": retrying or failing over will not help.
_REFUSED = frozenset({400, 422})


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """Seconds a 429 (or 503) asks us to wait: retry-after-ms, Retry-After in seconds or as a
    date, bounded to MAX_RETRY_AFTER."""
    headers = response.headers
    with contextlib.suppress(ValueError):
        if "retry-after-ms" in headers:
            return max(0.0, min(MAX_RETRY_AFTER, float(headers["retry-after-ms"]) / 1000))
    value = headers.get("retry-after")
    if value is None:
        return default
    try:
        return max(0.0, min(MAX_RETRY_AFTER, float(value)))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, min(MAX_RETRY_AFTER, when.timestamp() - time.time()))
    return default


class ProviderHttp:
    """One provider's HTTP client: base URL, auth headers, deadlines, 429s and outages handled,
    errors as ProviderError or InvalidOptions with the provider's own message (never a key)."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        headers: Mapping[str, str],
        describe_error: Callable[[httpx.Response], str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = config.name
        self._client = httpx.Client(
            base_url=config.host,
            headers={"User-Agent": "videogen", **headers},
            transport=transport,
            follow_redirects=True,
            trust_env=False,
        )
        self._describe = describe_error or error_message
        self._sleep = time.sleep

    def close(self) -> None:
        """Closes the connections."""
        self._client.close()

    def json(self, method: str, url: str, deadline: float, **kwargs: Any) -> Any:
        """The JSON of one call's answer."""
        response = self.request(method, url, deadline, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{self.name}: {method} {_path(url)}: the answer is not JSON") from None

    def poll(self, url: str, deadline: float, *, timeout_seconds: float) -> Any:
        """The JSON of one status GET of a task due by deadline; a GET the deadline cut short is
        the task's own timeout ("no video within"), whatever the server was doing."""
        try:
            return self.json("GET", url, deadline)
        except ProviderError:
            if time.monotonic() >= deadline:
                raise ProviderError(f"{self.name}: no video within {timeout_seconds:g}s") from None
            raise

    def request(self, method: str, url: str, deadline: float, **kwargs: Any) -> httpx.Response:
        """One call (a full URL or a path under the base URL), repeated after a 429 for as long
        as its Retry-After fits the deadline and, unless it is a POST, after a brief outage
        (502-504) a few times."""
        transient = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProviderError(f"{self.name}: {method} {_path(url)}: timed out")
            try:
                response = self._client.request(method, url, timeout=left, **kwargs)
            except httpx.TimeoutException:
                raise ProviderError(f"{self.name}: {method} {_path(url)}: timed out") from None
            except httpx.HTTPError as exc:
                raise ProviderError(f"{self.name}: {method} {_path(url)}: {type(exc).__name__}") from None
            outage = response.status_code in TRANSIENT and method.upper() in IDEMPOTENT
            if response.status_code == 429 or (outage and transient < TRANSIENT_RETRIES):
                limited = response.status_code == 429
                wait = retry_after(response, default=1.0 if limited else 0.5 * 2**transient)
                transient += 0 if limited else 1
                if time.monotonic() + wait >= deadline:
                    detail = self._describe(response)
                    raise ProviderError(f"{self.name}: {method} {_path(url)}: HTTP {response.status_code} {detail}",
                                        rate_limited=limited)  # fmt: skip
                # Jitter, so that workers told the same Retry-After do not come back together.
                self._sleep(wait * (1 + random.random() * 0.2))
                continue
            if response.status_code >= 400:
                detail = self._describe(response)
                if response.status_code in _REFUSED:
                    raise InvalidOptions(f"{self.name} refused the request: {detail}")
                raise ProviderError(f"{self.name}: {method} {_path(url)}: HTTP {response.status_code} {detail}")
            return response

    def download(self, url: str, output: Path, deadline: float, *, max_bytes: int, auth: bool = False) -> None:
        """Streams url to output, at most max_bytes; ProviderError when it fails (an expired URL
        answers 403 or 404). The provider's headers go only to its own host, unless auth."""
        client = self._client if auth else httpx.Client(follow_redirects=True, trust_env=False)
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProviderError(f"{self.name}: download: timed out")
        try:
            with client.stream("GET", url, timeout=left) as response:
                if response.status_code >= 400:
                    raise ProviderError(f"{self.name}: download: HTTP {response.status_code} (expired?)")
                size = 0
                with open(output, "wb") as handle:
                    for chunk in response.iter_bytes(1 << 16):
                        size += len(chunk)
                        if size > max_bytes:
                            raise ProviderError(f"{self.name}: the video is larger than {max_bytes} bytes")
                        handle.write(chunk)
                        if time.monotonic() > deadline:
                            raise ProviderError(f"{self.name}: download: timed out")
        except httpx.HTTPError as exc:
            raise ProviderError(f"{self.name}: download: {type(exc).__name__}") from None
        finally:
            if not auth:
                client.close()


def fetch_video(
    http: ProviderHttp,
    output: Path,
    deadline: float,
    *,
    url: Callable[[], str],
    max_bytes: int,
    model: str,
    auth: bool = False,
) -> RenderedVideo:
    """Downloads the video now (providers' URLs expire), trying again with a freshly asked URL
    (url() is called before each try) when a try fails, then checks that it is a video."""
    failure: ProviderError | None = None
    for _ in range(DOWNLOAD_ATTEMPTS):
        try:
            http.download(url(), output, deadline, max_bytes=max_bytes, auth=auth)
            return probe_video(output, model=model)
        except ProviderError as exc:
            failure = exc
            if "larger than" in str(exc) or time.monotonic() >= deadline:
                break
    assert failure is not None
    raise failure


def probe_video(path: Path, *, model: str) -> RenderedVideo:
    """What the file really holds, read with PyAV; ProviderError when it is no video."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = float(container.duration or 0) / 1e6
            formats = container.format.name.split(",")
            return RenderedVideo(
                path=path,
                content_type=next((kind for name, kind in CONTENT_TYPES.items() if name in formats), "video/mp4"),
                duration_seconds=duration,
                width=stream.width,
                height=stream.height,
                fps=float(stream.average_rate or 0),
                model=model,
                codec=stream.codec_context.name,
            )
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise ProviderError(f"the video the provider gave is not one we can read: {type(exc).__name__}") from exc


def error_message(response: httpx.Response) -> str:
    """The provider's reason from a JSON error body (the shapes providers use), else the
    status's phrase; at most 300 characters."""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            for key in ("error", "detail", "message", "title"):
                value = body.get(key)
                if isinstance(value, dict):
                    value = value.get("message") or value.get("detail") or value.get("code")
                if isinstance(value, str | int) and str(value):
                    return str(value)[:300]
    return response.reason_phrase


def _path(url: str) -> str:
    """The path of a URL, for messages (a query may carry a token)."""
    return httpx.URL(url).path if "://" in url else url.split("?", 1)[0]
