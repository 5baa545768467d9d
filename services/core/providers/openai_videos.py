"""The `openai-compatible` kind (formerly `openai-videos`): servers that speak the OpenAI
Videos API (vLLM-Omni, LiteLLM's proxy, Together). OpenAI's own endpoint closed on 2026-09-24.

Create a video (POST /videos, multipart), poll it (GET /videos/{id}) until `completed` or
`failed`, download it (GET /videos/{id}/content), delete it when our job is cancelled
(DELETE /videos/{id}); the probe lists one video (GET /videos?limit=1). A 429 is honoured
(Retry-After, bounded by the call's deadline) and is not a failure of the provider.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx

from services.core.providers.base import (
    InvalidOptions,
    JobCancelled,
    KindInfo,
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    TaskCallback,
    VideoSpec,
)
from services.core.providers.http import probe_video
from services.core.providers.registry import ProviderConfig

SECONDS = (4, 8, 12)
MAX_RETRY_AFTER = 60.0


class OpenAIVideos:
    """A client of one OpenAI-compatible Videos endpoint."""

    # No host of its own (OpenAI's closed): the entry names its server, and its models.
    info: ClassVar[KindInfo] = KindInfo(base_url=None, models={}, needs_key=False)

    def __init__(self, config: ProviderConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.name = config.name
        self._config = config
        self._base = config.host
        self._transport = transport

    def spec(self, prompt: str, metadata: Mapping[str, Any], *, model: str = "") -> VideoSpec:
        """seconds (4, 8 or 12) from durationSeconds, and size WxH from width and height."""
        seconds = metadata.get("durationSeconds", 4)
        if seconds not in SECONDS:
            raise InvalidOptions(f"metadata.durationSeconds must be one of {SECONDS} for {self.name}")
        width, height = metadata.get("width", 1280), metadata.get("height", 720)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 4096 for v in (width, height)):
            raise InvalidOptions("metadata.width and metadata.height must be whole pixels, 16-4096")
        return VideoSpec(
            prompt=prompt,
            duration_seconds=float(seconds),
            width=width,
            height=height,
            fps=0,
            model=model or self._config.model,
        )

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Creates the video, polls it to the end, and downloads it to output."""
        deadline = time.monotonic() + self._config.timeout_seconds
        with self._client() as client:
            form = {
                "prompt": (None, spec.prompt),
                "model": (None, spec.model),
                "seconds": (None, str(int(spec.duration_seconds))),
                "size": (None, f"{spec.width}x{spec.height}"),
            }
            video = self._json(client, "POST", "/videos", deadline, files=form)
            on_task(str(video["id"]))
            try:
                self._wait(client, video, deadline, progress)
            except JobCancelled:
                with contextlib.suppress(ProviderError, httpx.HTTPError):
                    self._request(client, "DELETE", f"/videos/{video['id']}", min(deadline, time.monotonic() + 5))
                raise
            self._download(client, str(video["id"]), output, deadline)
        return probe_video(output, model=spec.model)

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Deletes the video (which stops it while it runs)."""
        with self._client() as client:
            try:
                self._request(client, "DELETE", f"/videos/{task_id}", time.monotonic() + timeout)
            except ProviderError as exc:
                if "HTTP 404" not in str(exc):
                    raise

    def probe(self, timeout: float) -> None:
        """Lists one video: the endpoint answers and accepts our credential."""
        with self._client() as client:
            self._json(client, "GET", "/videos?limit=1", time.monotonic() + timeout)

    def _client(self) -> httpx.Client:
        headers = {"User-Agent": "videogen"}
        key = self._config.api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        return httpx.Client(base_url=self._base, headers=headers, transport=self._transport)

    def _wait(self, client: httpx.Client, video: dict[str, Any], deadline: float, progress: ProgressCallback) -> None:
        while True:
            status = video.get("status")
            if status == "completed":
                return
            if status == "failed":
                error = video.get("error") or {}
                raise ProviderError(
                    f"{self.name}: video failed: {error.get('message') or error.get('code') or 'no reason'}"
                )
            progress(min(0.99, float(video.get("progress") or 0) / 100), str(status or "queued"))
            if time.monotonic() + self._config.poll_interval_seconds > deadline:
                raise ProviderError(f"{self.name}: no video within {self._config.timeout_seconds:.0f}s")
            time.sleep(self._config.poll_interval_seconds)
            video = self._json(client, "GET", f"/videos/{video['id']}", deadline)

    def _download(self, client: httpx.Client, video_id: str, output: Path, deadline: float) -> None:
        response = self._request(client, "GET", f"/videos/{video_id}/content", deadline, stream=True)
        try:
            with open(output, "wb") as handle:
                for chunk in response.iter_bytes(1 << 16):
                    handle.write(chunk)
        except httpx.HTTPError as exc:
            raise ProviderError(f"{self.name}: download failed: {type(exc).__name__}") from exc
        finally:
            response.close()

    def _json(self, client: httpx.Client, method: str, path: str, deadline: float, **kwargs: Any) -> dict[str, Any]:
        response = self._request(client, method, path, deadline, **kwargs)
        try:
            body = response.json()
        except ValueError:
            raise ProviderError(f"{self.name}: {method} {path}: the answer is not JSON") from None
        if not isinstance(body, dict):
            raise ProviderError(f"{self.name}: {method} {path}: the answer is not a JSON object")
        return body

    def _request(
        self, client: httpx.Client, method: str, path: str, deadline: float, *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One call, repeated after a 429 while the deadline allows; errors as ProviderError."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProviderError(f"{self.name}: {method} {path}: timed out")
            try:
                request = client.build_request(method, path, timeout=left, **kwargs)
                response = client.send(request, stream=stream)
            except httpx.TimeoutException:
                raise ProviderError(f"{self.name}: {method} {path}: timed out") from None
            except httpx.HTTPError as exc:
                raise ProviderError(f"{self.name}: {method} {path}: {type(exc).__name__}") from None
            if response.status_code == 429:
                wait = _retry_after(response)
                response.close()
                if time.monotonic() + wait >= deadline:
                    raise ProviderError(f"{self.name}: rate limited beyond the deadline", rate_limited=True)
                time.sleep(wait)
                continue
            if response.status_code >= 400:
                if stream:
                    response.read()
                detail = _error_message(response)
                response.close()
                if response.status_code in (400, 422):
                    raise InvalidOptions(f"{self.name} refused the request: {detail}")
                raise ProviderError(f"{self.name}: {method} {path}: HTTP {response.status_code} {detail}")
            return response


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, min(MAX_RETRY_AFTER, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


def _error_message(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError):
        error = response.json().get("error") or {}
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:300]
    return response.reason_phrase
