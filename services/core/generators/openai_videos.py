"""The `openai-compatible` kind (formerly `openai-videos`): servers that speak OpenAI's Videos
API, such as vLLM-Omni (self-hosted), LiteLLM's proxy and Together. OpenAI's own endpoint closed
on 2026-09-24, so an entry always names its server (base_url).

Create (POST /videos, multipart; JSON for Together), poll GET /videos/{id} (`queued`, then
`in_progress` with `progress` 0-100, then `completed` or `failed`), download GET
/videos/{id}/content or, when the answer carries one, its `outputs.video_url` (Together), and
DELETE /videos/{id} to cancel. The probe lists one video. What the create holds follows the
entry's `dialect` (openai_fields.py). Without `models`, an entry makes OpenAI's shape (4, 8 or
12 s; 1280x720, 720x1280, 1792x1024, 1024x1792) with the server's own model.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from services.core.generators import openai_fields
from services.core.generators.base import (
    InvalidOptions,
    JobCancelled,
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    TaskCallback,
    VideoSpec,
)
from services.core.generators.catalog import OPENAI_SHAPE, SERVER_DEFAULT
from services.core.generators.http import ProviderHttp, fetch_video
from services.core.generators.input_images import ImageFetcher
from services.core.generators.registry import ProviderConfig
from services.core.generators.spec_mapping import fit_or_refuse, within
from services.core.job.options import JobOptions

# Words of a failure's code or message that mean the server's moderation refused the prompt.
SAFETY_WORDS = ("moderation", "safety", "content_policy", "content policy", "nsfw")
# How long a cancel may take when our job is cancelled mid-generation.
CANCEL_SECONDS = 5.0


class OpenAIVideos:
    """A client of one OpenAI-compatible Videos endpoint."""

    def __init__(
        self,
        config: ProviderConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        images: ImageFetcher | None = None,
    ) -> None:
        self.name = config.name
        self._config = config
        self._transport = transport
        self._images = images or ImageFetcher()

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        """The model's nearest legal length (whole seconds) and shape for the job's
        durationSeconds, aspectRatio or width/height and imageUrl; fps, seed and the tuning
        fields when given (sent where the dialect takes them)."""
        model = model or self._config.model
        capabilities = self._config.capabilities_of(model) or OPENAI_SHAPE
        fitted = fit_or_refuse(capabilities, options, provider=self.name, model=model)
        label = fitted.aspect_ratio or options.request.aspect_label or next(iter(capabilities.aspect_ratios), "16:9")
        width, height = openai_fields.pixels(options, label, openai_sizes=capabilities is OPENAI_SHAPE)
        return VideoSpec(
            prompt=prompt,
            duration_seconds=float(max(1, round(fitted.duration_seconds))),
            width=width,
            height=height,
            fps=within("fps", options.fps, 1, 120) or 0,
            model=model,
            aspect_ratio=label,
            image_url=options.image_url,
            seed=options.seed,
            extra=openai_fields.extras(options),
        )

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Creates the video, polls it to its end, and downloads it to output at once."""
        deadline = time.monotonic() + self._config.timeout_seconds
        with self._http() as http:
            video = self._create(http, spec, deadline)
            video_id = str(video["id"])
            on_task(video_id)
            try:
                video = self._wait(http, video, deadline, progress)
            except JobCancelled:
                with contextlib.suppress(ProviderError, InvalidOptions):
                    http.request("DELETE", f"/videos/{video_id}", min(deadline, time.monotonic() + CANCEL_SECONDS))
                raise
            progress(0.99, "downloading")
            # An entry without models learns here which one its server runs.
            reported = video.get("model")
            model = reported if spec.model == SERVER_DEFAULT and isinstance(reported, str) and reported else spec.model
            return self._download(http, video, output, deadline, model=model)

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Deletes the video, which stops it while it runs; one already gone is fine."""
        with self._http() as http:
            try:
                http.request("DELETE", f"/videos/{task_id}", time.monotonic() + timeout)
            except InvalidOptions as exc:
                raise ProviderError(str(exc)) from None
            except ProviderError as exc:
                if "HTTP 404" not in str(exc):
                    raise

    def probe(self, timeout: float) -> None:
        """Lists one video (Together, which documents no list: reads a video that does not
        exist, whose 404 says the key was taken); nothing is generated."""
        with self._http() as http:
            deadline = time.monotonic() + timeout
            if self._config.dialect != "together":
                http.request("GET", "/videos?limit=1", deadline)
                return
            try:
                http.request("GET", "/videos/videogen-probe", deadline)
            except ProviderError as exc:
                if "HTTP 404" not in str(exc):
                    raise

    def _http(self) -> contextlib.closing[ProviderHttp]:
        # The key is read at each use, so that a rotated key takes effect without a restart.
        key = self._config.api_key()
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
        return contextlib.closing(ProviderHttp(self._config, headers=headers, transport=self._transport))

    def _create(self, http: ProviderHttp, spec: VideoSpec, deadline: float) -> dict[str, Any]:
        dialect = self._config.dialect
        if dialect == "together":
            answer = http.json("POST", "/videos", deadline, json=openai_fields.together_body(spec))
        else:
            image = self._images.fetch(spec.image_url, deadline=deadline) if spec.image_url else None
            form = openai_fields.multipart(spec, dialect=dialect, send_model=spec.model != SERVER_DEFAULT, image=image)
            answer = http.json("POST", "/videos", deadline, files=form)
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str | int) or not str(answer["id"]):
            raise ProviderError(f"{self.name}: POST /videos: the answer names no video id")
        return answer

    def _wait(
        self, http: ProviderHttp, video: dict[str, Any], deadline: float, progress: ProgressCallback
    ) -> dict[str, Any]:
        """Polls until the video is completed; queued and in_progress are reported, not failures."""
        video_id = str(video["id"])
        while True:
            status = str(video.get("status") or "queued")
            if status in ("completed", "succeeded"):
                return video
            if status in ("failed", "cancelled", "canceled", "expired"):
                raise self._failure(video, status)
            stage = "queued" if status == "queued" else "generating"
            percent = video.get("progress")
            fraction = percent / 100 if isinstance(percent, int | float) and not isinstance(percent, bool) else 0.0
            progress(max(0.0, min(0.95, fraction)), stage)
            if time.monotonic() + self._config.poll_interval_seconds > deadline:
                raise ProviderError(f"{self.name}: no video within {self._config.timeout_seconds:.0f}s ({status})")
            time.sleep(self._config.poll_interval_seconds)
            answer = http.poll(f"/videos/{video_id}", deadline, timeout_seconds=self._config.timeout_seconds)
            if not isinstance(answer, dict):
                raise ProviderError(f"{self.name}: GET /videos/{video_id}: the answer is not a video")
            video = answer

    def _failure(self, video: Mapping[str, Any], status: str) -> ProviderError:
        """The server's reason; a moderation refusal is final (no retry, no other provider)."""
        error = video.get("error")
        info = video.get("info")
        parts: list[str] = []
        if isinstance(error, dict):
            parts = [str(error[key]) for key in ("code", "message") if error.get(key)]
        elif isinstance(error, str):
            parts = [error]
        if not parts and isinstance(info, dict) and info.get("errors"):
            parts = [str(info["errors"])]
        reason = ": ".join(parts)[:300] or "no reason given"
        safety = any(word in reason.lower() for word in SAFETY_WORDS)
        return ProviderError(f"{self.name}: video {status}: {reason}", final=safety)

    def _download(
        self, http: ProviderHttp, video: dict[str, Any], output: Path, deadline: float, *, model: str
    ) -> RenderedVideo:
        """From the answer's output URL when it gives one (asking the video again for a fresh
        URL before each further try), else from the content endpoint, with our key."""
        video_id, limit = str(video["id"]), self._config.max_video_bytes
        first = _output_url(video)
        if first is None:
            content = f"{self._config.host}/videos/{video_id}/content"
            return fetch_video(http, output, deadline, url=lambda: content, max_bytes=limit, model=model, auth=True)
        urls = iter([first])

        def fresh() -> str:
            url = next(urls, None)
            if url is None:
                url = _output_url(http.json("GET", f"/videos/{video_id}", deadline))
            if url is None:
                raise ProviderError(f"{self.name}: GET /videos/{video_id}: the answer has no video URL")
            return url

        return fetch_video(http, output, deadline, url=fresh, max_bytes=limit, model=model)


def _output_url(video: Any) -> str | None:
    """Together's `outputs.video_url`, when the answer has one."""
    outputs = video.get("outputs") if isinstance(video, dict) else None
    url = outputs.get("video_url") if isinstance(outputs, dict) else None
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None
