"""The `runway` kind: Runway's API (https://api.dev.runwayml.com, docs.dev.runwayml.com).

Create a task (POST /v1/text_to_video, or /v1/image_to_video with the first frame), poll it
(GET /v1/tasks/{id}: PENDING, THROTTLED, RUNNING with `progress`, then SUCCEEDED, FAILED or
CANCELLED), download its output at once (signed URLs that expire within 24-48 h: the task is
read again for fresh ones), and cancel it with DELETE /v1/tasks/{id}. Every call carries
`Authorization: Bearer <key>` and `X-Runway-Version: 2024-11-06`. A SAFETY.* failure is
Runway's moderation refusing the prompt or image: final, neither retried nor failed over.
The probe reads the organization (GET /v1/organization: credit balance and tier), which is free.
"""

from __future__ import annotations

import contextlib
import math
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
from services.core.generators.capabilities import RATIO_TOLERANCE, ratio_value
from services.core.generators.catalog import RUNWAY_ALL_SIZES, RUNWAY_MODELS
from services.core.generators.http import ProviderHttp, fetch_video
from services.core.generators.registry import ProviderConfig
from services.core.generators.spec_mapping import fitted, whole_seconds
from services.core.job.options import JobOptions
from services.core.logging import get_logger

log = get_logger(__name__)
API_VERSION = "2024-11-06"
# Models that take no seed, and those whose audio we turn off (it costs more).
UNSEEDED = frozenset({"veo3", "veo3.1", "veo3.1_fast"})
SILENT = frozenset({"veo3.1", "veo3.1_fast"})
# Runway's limit on promptText for these models, in UTF-16 code units.
PROMPT_LIMIT = 1000
# How long cancelling the remote task may take when our job stops.
CANCEL_SECONDS = 5.0


class TaskEnded(ProviderError):
    """The task ended at Runway without a video (failed, or cancelled there): nothing to cancel."""


class Runway:
    """A client of Runway's API for one registry entry."""

    def __init__(self, config: ProviderConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.name = config.name
        self._config = config
        headers = {"X-Runway-Version": API_VERSION}
        key = config.api_key()
        if key is not None:
            headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        self._http = ProviderHttp(config, headers=headers, transport=transport)

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        """durationSeconds to whole seconds the model makes, aspectRatio (or width/height) to its
        nearest pixel ratio, imageUrl to the first frame, seed passed on."""
        job = fitted(self._config, options, model=model)
        if job.model in RUNWAY_MODELS and len(prompt.encode("utf-16-le")) // 2 > PROMPT_LIMIT:
            raise InvalidOptions(f"prompt: {job.model} on {self.name} takes at most {PROMPT_LIMIT} characters")
        ratio = _pixel_ratio(job.model, job.fit.aspect_ratio, job.request.aspect_ratio, options)
        width, height = (int(side) for side in ratio.split(":")) if ratio else (0, 0)
        return VideoSpec(
            prompt=prompt,
            duration_seconds=float(whole_seconds(job.fit.duration_seconds, job.capabilities)),
            width=width,
            height=height,
            fps=0,
            model=job.model,
            aspect_ratio=ratio,
            image_url=options.image_url,
            seed=options.seed,
        )

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Creates the task, follows it to the end, and downloads its video to output."""
        deadline = time.monotonic() + self._config.timeout_seconds
        endpoint = "/v1/image_to_video" if spec.image_url else "/v1/text_to_video"
        created = self._http.json("POST", endpoint, deadline, json=_body(spec))
        task_id = str(created.get("id") or "") if isinstance(created, dict) else ""
        if not task_id:
            raise ProviderError(f"{self.name}: POST {endpoint}: the answer names no task")
        on_task(task_id)
        log.info("runway.task_created", provider=self.name, task_id=task_id, model=spec.model)
        try:
            task = self._wait(task_id, deadline, progress)
        except JobCancelled:
            self._abandon(task_id, reason="job cancelled")
            raise
        except TaskEnded:
            raise
        except ProviderError as exc:
            # We stop waiting (a timeout, Runway unreachable): nobody should pay for the task.
            self._abandon(task_id, reason=str(exc))
            raise
        return fetch_video(
            self._http,
            output,
            deadline,
            url=self._output_urls(task_id, task, deadline),
            max_bytes=self._config.max_video_bytes,
            model=spec.model,
        )

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Cancels the task (or deletes it when it already ended); one Runway no longer knows is fine."""
        try:
            self._http.request("DELETE", f"/v1/tasks/{task_id}", time.monotonic() + timeout, headers={"Accept": "*/*"})
        except ProviderError as exc:
            if "HTTP 404" not in str(exc):
                raise
        log.info("runway.task_cancelled", provider=self.name, task_id=task_id)

    def probe(self, timeout: float) -> None:
        """Reads the organization (credits and tier): Runway answers and accepts the key, for free."""
        self._http.json("GET", "/v1/organization", time.monotonic() + timeout)

    def _wait(self, task_id: str, deadline: float, progress: ProgressCallback) -> dict[str, Any]:
        """Polls the task until it succeeds; ProviderError when it fails, is cancelled at Runway,
        or outlives the deadline. Queued and throttled tasks are waited for, not failed."""
        status = "PENDING"
        task: dict[str, Any] = {}
        while True:
            if status == "SUCCEEDED":
                return task
            if status in ("FAILED", "CANCELLED"):
                raise _task_failure(self.name, task_id, task)
            progress(*_progress_of(status, task))
            if time.monotonic() + self._config.poll_interval_seconds >= deadline:
                raise ProviderError(f"{self.name}: no video within {self._config.timeout_seconds:g}s "
                                    f"(task {task_id}, last {status})")  # fmt: skip
            time.sleep(self._config.poll_interval_seconds)
            task = self._task(task_id, deadline)
            status = str(task.get("status") or "")

    def _task(self, task_id: str, deadline: float) -> dict[str, Any]:
        task = self._http.poll(f"/v1/tasks/{task_id}", deadline, timeout_seconds=self._config.timeout_seconds)
        if not isinstance(task, dict):
            raise ProviderError(f"{self.name}: GET /v1/tasks/{task_id}: the answer is not a task")
        return task

    def _output_urls(self, task_id: str, task: dict[str, Any], deadline: float) -> Callable[[], str]:
        """The output URL of the finished task, then (for each further try) a fresh one, read again."""
        first = [task]

        def url() -> str:
            current = first.pop() if first else self._task(task_id, deadline)
            outputs = current.get("output")
            if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], str):
                raise ProviderError(f"{self.name}: task {task_id} succeeded without an output URL")
            return outputs[0]

        return url

    def _abandon(self, task_id: str, *, reason: str) -> None:
        """Cancels the task we stop waiting for, within a few seconds, whatever the answer."""
        log.info("runway.task_abandoned", provider=self.name, task_id=task_id, reason=reason[:200])
        with contextlib.suppress(ProviderError):
            self.cancel(task_id, timeout=CANCEL_SECONDS)


def _body(spec: VideoSpec) -> dict[str, Any]:
    """The JSON of a create call (camelCase, as Runway's API takes it)."""
    body: dict[str, Any] = {"model": spec.model, "ratio": spec.aspect_ratio, "duration": int(spec.duration_seconds)}
    if spec.prompt:
        body["promptText"] = spec.prompt
    if spec.image_url:
        body["promptImage"] = spec.image_url
    if spec.seed is not None and spec.model not in UNSEEDED:
        body["seed"] = spec.seed
    if spec.model in SILENT:
        body["audio"] = False
    return body


def _progress_of(status: str, task: Mapping[str, Any]) -> tuple[float, str]:
    """The fraction done and the stage a task's status shows."""
    if status == "RUNNING":
        value = task.get("progress")
        fraction = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
        # Documented as a float without a range: a percentage is taken as one too.
        fraction = fraction / 100 if fraction > 1 else fraction
        return max(0.0, min(0.99, fraction)), "running"
    if status == "THROTTLED":
        return 0.0, "throttled (waiting for a Runway slot)"
    return 0.0, "queued" if status == "PENDING" else status.lower() or "queued"


def _task_failure(name: str, task_id: str, task: Mapping[str, Any]) -> TaskEnded:
    """The error of a task that ended without a video; a SAFETY.* refusal is final."""
    if task.get("status") == "CANCELLED":
        return TaskEnded(f"{name}: task {task_id} was cancelled at Runway")
    code = str(task.get("failureCode") or "")
    reason = str(task.get("failure") or "no reason given")[:300]
    safety = code.startswith("SAFETY.")
    label = "refused by Runway's moderation" if safety else "failed"
    return TaskEnded(f"{name}: task {task_id} {label}: {reason}" + (f" ({code})" if code else ""), final=safety)


def _pixel_ratio(model: str, chosen: str | None, wanted: float | None, options: JobOptions) -> str:
    """The size Runway takes for the fitted shape: the model's pixel ratio of that shape (an
    entry may say "16:9"), its first when the job names no shape; among sizes of one shape
    (1280:720, 1920:1080), the one nearest the job's width x height."""
    sizes = RUNWAY_MODELS[model].aspect_ratios if model in RUNWAY_MODELS else RUNWAY_ALL_SIZES
    target = ratio_value(chosen) if chosen else wanted
    if target is None:
        return sizes[0]
    distance = {size: abs(math.log(ratio_value(size) / target)) for size in sizes}
    best = min(distance.values())
    if best > RATIO_TOLERANCE:
        return chosen or sizes[0]
    same = [size for size in sizes if distance[size] - best < 1e-9]
    if options.width is None or options.height is None:
        return same[0]
    area = options.width * options.height
    return min(same, key=lambda size: abs(math.prod(int(side) for side in size.split(":")) - area))
