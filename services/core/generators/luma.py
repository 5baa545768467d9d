"""The `luma` kind: Luma's Agents API (https://agents.lumalabs.ai/v1, model ray-3.2).

Create a generation (POST /generations, type "video"), poll it (GET /generations/{id}: queued,
processing, then completed with `output[].url` or failed with `failure_code` and
`failure_reason`), and download the video at once: its presigned URL expires after an hour, and
the generation is read again for a fresh one when a download fails. Calls carry
`Authorization: Bearer <key>`. `content_moderated` is Luma's moderation refusing the prompt or
image: final. The API has no cancel endpoint: a cancelled job stops waiting and says so in a
log line, and Luma finishes (and bills) the generation. Luma reports no progress, only states.
The probe reads a generation that does not exist: a 404 means Luma answered and took the key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from services.core.generators.base import (
    InvalidOptions,
    JobCancelled,
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    TaskCallback,
    VideoSpec,
)
from services.core.generators.http import ProviderHttp, fetch_video
from services.core.generators.registry import ProviderConfig
from services.core.generators.spec_mapping import fitted, whole_seconds
from services.core.job.options import JobOptions
from services.core.logging import get_logger

log = get_logger(__name__)
# We ask for 720p SDR, Luma's default; 540p, 1080p and HDR cost differently (docs/providers.md).
RESOLUTION = "720p"
# A video from a first frame is 5 s only (10 s is text-to-video only).
IMAGE_SECONDS = 5
# Failure codes that say our request (its image, its options) is what Luma cannot take.
REFUSED_INPUT = frozenset({"invalid_request", "image_too_large", "unsupported_format", "corrupt_input"})
# A generation id that never exists, for the probe.
NO_GENERATION = "00000000-0000-0000-0000-000000000000"


class Luma:
    """A client of Luma's Agents API for one registry entry."""

    def __init__(self, config: ProviderConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.name = config.name
        self._config = config
        key = config.api_key()
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
        self._http = ProviderHttp(config, headers=headers, transport=transport)

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        """durationSeconds to 5 or 10 s, aspectRatio (or width/height) to Luma's nearest ratio
        (16:9 when the job names none), imageUrl to the first frame; a seed is not taken."""
        job = fitted(self._config, options, model=model)
        seconds = whole_seconds(job.fit.duration_seconds, job.capabilities)
        if options.image_url and seconds > IMAGE_SECONDS:
            raise InvalidOptions(
                f"metadata.durationSeconds: {self.name} ({job.model}) makes {IMAGE_SECONDS} s from an image, "
                f"not {job.request.describe()}"
            )
        return VideoSpec(
            prompt=prompt,
            duration_seconds=float(seconds),
            width=0,
            height=0,
            fps=0,
            model=job.model,
            aspect_ratio=job.fit.aspect_ratio or "16:9",
            image_url=options.image_url,
        )

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Creates the generation, follows it to the end, and downloads its video to output."""
        deadline = time.monotonic() + self._config.timeout_seconds
        generation = self._generation(self._http.json("POST", "/generations", deadline, json=_body(spec)), "POST")
        generation_id = str(generation.get("id") or "")
        if not generation_id:
            raise ProviderError(f"{self.name}: POST /generations: the answer names no generation")
        on_task(generation_id)
        log.info("luma.generation_created", provider=self.name, generation_id=generation_id, model=spec.model)
        try:
            generation = self._wait(generation, deadline, progress)
        except JobCancelled:
            self.cancel(generation_id, timeout=0)
            raise
        return fetch_video(
            self._http,
            output,
            deadline,
            url=self._output_urls(generation, deadline),
            max_bytes=self._config.max_video_bytes,
            model=spec.model,
        )

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Does nothing, and says so: Luma's API has no way to stop a generation."""
        log.info("luma.cancel_unsupported", provider=self.name, generation_id=task_id,
                 detail="Luma's API cannot cancel a generation; it runs to its end and is billed")  # fmt: skip

    def probe(self, timeout: float) -> None:
        """Reads a generation that does not exist: Luma's 404 shows it answers and took the key."""
        try:
            self._http.request("GET", f"/generations/{NO_GENERATION}", time.monotonic() + timeout)
        except InvalidOptions:
            return  # 400/422: it judged the request, so it took the key
        except ProviderError as exc:
            if "HTTP 404" not in str(exc):
                raise

    def _wait(self, generation: dict[str, Any], deadline: float, progress: ProgressCallback) -> dict[str, Any]:
        """Polls the generation until it completes; ProviderError (or InvalidOptions) when it fails
        or outlives the deadline. Queued generations are waited for, not failed."""
        generation_id = str(generation["id"])
        while True:
            state = str(generation.get("state") or "")
            if state == "completed":
                return generation
            if state == "failed":
                raise _failure(self.name, generation_id, generation)
            # No progress figure: processing only shows the render started.
            progress(0.1 if state == "processing" else 0.0, state or "queued")
            if time.monotonic() + self._config.poll_interval_seconds >= deadline:
                raise ProviderError(f"{self.name}: no video within {self._config.timeout_seconds:g}s "
                                    f"(generation {generation_id}, last {state or 'queued'})")  # fmt: skip
            time.sleep(self._config.poll_interval_seconds)
            generation = self._read(generation_id, deadline)

    def _read(self, generation_id: str, deadline: float) -> dict[str, Any]:
        answer = self._http.poll(
            f"/generations/{generation_id}", deadline, timeout_seconds=self._config.timeout_seconds
        )
        return self._generation(answer, "GET")

    def _generation(self, answer: Any, method: str) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise ProviderError(f"{self.name}: {method} /generations: the answer is not a generation")
        return answer

    def _output_urls(self, generation: dict[str, Any], deadline: float) -> Callable[[], str]:
        """The video URL of the completed generation, then (for each further try) a fresh one."""
        first = [generation]

        def url() -> str:
            current = first.pop() if first else self._read(str(generation["id"]), deadline)
            return _video_url(self.name, current)

        return url


def _body(spec: VideoSpec) -> dict[str, Any]:
    """The JSON of a create call."""
    video: dict[str, Any] = {"duration": f"{int(spec.duration_seconds)}s", "resolution": RESOLUTION}
    if spec.image_url:
        video["start_frame"] = {"url": spec.image_url}
    return {"model": spec.model, "type": "video", "prompt": spec.prompt, "aspect_ratio": spec.aspect_ratio,
            "video": video}  # fmt: skip


def _video_url(name: str, generation: Mapping[str, Any]) -> str:
    """The URL of the generation's video among its outputs."""
    outputs = [o for o in generation.get("output") or [] if isinstance(o, dict) and isinstance(o.get("url"), str)]
    videos = [o for o in outputs if o.get("type") == "video"] or outputs
    if not videos:
        raise ProviderError(f"{name}: generation {generation.get('id')} completed without a video URL")
    return str(videos[0]["url"])


def _failure(name: str, generation_id: str, generation: Mapping[str, Any]) -> Exception:
    """The error of a failed generation: content_moderated is final, a refused input is
    InvalidOptions, rate_limited is Luma asking us to slow down."""
    code = str(generation.get("failure_code") or "")
    reason = str(generation.get("failure_reason") or "no reason given")[:300]
    text = f"{name}: generation {generation_id} failed: {reason}" + (f" ({code})" if code else "")
    if code == "content_moderated":
        return ProviderError(f"{name}: generation {generation_id} refused by Luma's moderation: {reason}", final=True)
    if code in REFUSED_INPUT:
        return InvalidOptions(text)
    return ProviderError(text, rate_limited=code == "rate_limited")
