"""The `fal` kind: any video model on fal.ai's queue, named by its path (fal-ai/veo3.1, ...).

Submit the model's own input (POST {host}/{model path}), poll the request's status (IN_QUEUE
with its position, IN_PROGRESS, COMPLETED), read its result, download the video at once.
Status, result and cancel live under the model's app (owner/alias, without the model's
sub-path); the recorded task is that request's path, `{owner}/{alias}/requests/{id}`.
A cancelled job or a timeout cancels the request (PUT .../cancel). The probe reads the status
of a request that does not exist: a 404 says fal answered and took our key.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from contextlib import closing
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
from services.core.generators.catalog import FAL_MODELS, FAL_OTHER
from services.core.generators.hosted import CANCEL_SECONDS, model_input
from services.core.generators.http import ProviderHttp, fetch_video
from services.core.generators.registry import ProviderConfig
from services.core.generators.spec_mapping import hosted_spec
from services.core.job.options import JobOptions
from services.core.logging import get_logger

log = get_logger(__name__)
# Apps published under a namespace: their app path has one more part.
NAMESPACES = ("workflows", "comfy")
MODEL = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$")
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
TASK = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+){1,2}/requests/[A-Za-z0-9_-]{1,128}$")
PROBE_REQUEST = "00000000-0000-0000-0000-000000000000"
# fal keeps outputs on its public CDN; ours are downloaded at once, so a day is plenty.
LIFECYCLE = {"X-Fal-Object-Lifecycle-Preference": json.dumps({"expiration_duration_seconds": 86400})}
SAFETY = frozenset({"content_policy_violation"})
PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s*%")


def app_path(model: str) -> str:
    """fal-ai/kling-video/v3/pro/text-to-video -> fal-ai/kling-video (where its requests live)."""
    parts = model.strip("/").split("/")
    size = 3 if parts[0] in NAMESPACES else 2
    if len(parts) < size or not MODEL.fullmatch(model) or any(not part.strip(".") for part in parts):
        raise InvalidOptions(f"metadata.model: {model!r} is not a fal model path such as fal-ai/veo3.1")
    return "/".join(parts[:size])


class Fal:
    """A client of fal.ai's queue for one registry entry."""

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self._config = config

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        """The job's options at the model's nearest legal values."""
        spec = hosted_spec(self._config, prompt, options, model=model)
        app_path(spec.model)
        return spec

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Submits the request, waits for it, downloads its video to output."""
        deadline = time.monotonic() + self._config.timeout_seconds
        style = FAL_MODELS[spec.model].style if spec.model in FAL_MODELS else FAL_OTHER
        with closing(self._http()) as http:
            try:
                submitted = http.json(
                    "POST", f"/{spec.model}", deadline, json=model_input(spec, style), headers=LIFECYCLE
                )
            except InvalidOptions as exc:
                raise self._refusal(exc, "") from None
            path = self._request_path(spec.model, submitted)
            on_task(path.lstrip("/"))
            try:
                status = self._wait(http, path, deadline, progress)
            except (JobCancelled, ProviderError):
                # Cancelled, timed out or unreachable while it may still run: nobody pays for it.
                self._stop(http, path)
                raise
            results = [self._result(http, path, status, deadline)]
            progress(0.95, "downloading")
            return fetch_video(
                http,
                output,
                deadline,
                # The result again on a retry: where fal can, a fresh URL.
                url=lambda: _video_url(results.pop() if results else self._result(http, path, status, deadline)),
                max_bytes=self._config.max_video_bytes,
                model=spec.model,
            )

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Cancels the request (task_id: its path); one already finished or unknown is fine."""
        if not TASK.fullmatch(task_id):
            log.warning("provider.unknown_task", provider=self.name, task_id=task_id[:200])
            return
        with closing(self._http()) as http:
            try:
                http.request("PUT", f"/{task_id}/cancel", time.monotonic() + timeout)
            except InvalidOptions:
                return  # fal's word that it already completed
            except ProviderError as exc:
                if "HTTP 404" not in str(exc):
                    raise

    def probe(self, timeout: float) -> None:
        """Reads the status of a request that does not exist (free): 404 means fal answered
        and accepted our key; 401 or 403 that it refused the key."""
        try:
            path = f"/{app_path(self._config.model)}/requests/{PROBE_REQUEST}/status"
        except InvalidOptions as exc:
            raise ProviderError(f"{self.name}: {exc}") from None
        with closing(self._http()) as http:
            try:
                http.request("GET", path, time.monotonic() + timeout)
            except InvalidOptions:
                return
            except ProviderError as exc:
                if "HTTP 404" not in str(exc):
                    raise

    def _http(self) -> ProviderHttp:
        key = self._config.api_key()
        headers = {"Authorization": f"Key {key.get_secret_value()}"} if key is not None else {}
        return ProviderHttp(self._config, headers=headers, describe_error=describe_error)

    def _request_path(self, model: str, submitted: Any) -> str:
        """The request's path under the host: fal's response_url when it is on our host (as fal
        asks), else built from the model's app path."""
        request_id = submitted.get("request_id") if isinstance(submitted, dict) else None
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            raise ProviderError(f"{self.name}: the submit answer names no request")
        path = f"/{app_path(model)}/requests/{request_id}"
        given, host = submitted.get("response_url"), httpx.URL(self._config.host)
        if isinstance(given, str):
            url = httpx.URL(given)
            prefix = host.path.rstrip("/")
            same = (url.scheme, url.host, url.port) == (host.scheme, host.host, host.port)
            relative = url.path[len(prefix) :] if url.path.startswith(prefix + "/") else ""
            if same and TASK.fullmatch(relative.lstrip("/")) and relative.endswith(f"/requests/{request_id}"):
                path = relative
        return path

    def _wait(self, http: ProviderHttp, path: str, deadline: float, progress: ProgressCallback) -> dict[str, Any]:
        """Polls the status until COMPLETED; queue position and logged percentages as progress."""
        done = 0.0
        while True:
            status = http.poll(f"{path}/status?logs=1", deadline, timeout_seconds=self._config.timeout_seconds)
            state = status.get("status") if isinstance(status, dict) else None
            if state == "COMPLETED":
                return dict(status)
            if state == "IN_QUEUE":
                position = status.get("queue_position")
                progress(0.0, f"queued (position {position})" if isinstance(position, int) else "queued")
            elif state == "IN_PROGRESS":
                done = max(done, _logged_fraction(status.get("logs")))
                progress(done, "in progress")
            else:
                raise ProviderError(f"{self.name}: unknown request status {str(state)[:40]!r}")
            if time.monotonic() + self._config.poll_interval_seconds >= deadline:
                raise ProviderError(f"{self.name}: no video within {self._config.timeout_seconds:g}s")
            time.sleep(self._config.poll_interval_seconds)

    def _result(self, http: ProviderHttp, path: str, status: Mapping[str, Any], deadline: float) -> dict[str, Any]:
        """The completed request's output; its failure as ProviderError (final for a safety
        refusal) or InvalidOptions (the model refused the input)."""
        failed = str(status.get("error") or "")[:300]
        error_type = str(status.get("error_type") or "")
        try:
            result = http.json("GET", path, deadline)
        except (InvalidOptions, ProviderError) as exc:
            raise self._refusal(exc, error_type) from None
        if failed or not isinstance(result, dict):
            kind = f" ({error_type})" if error_type else ""
            reason = failed or "no result"
            raise ProviderError(f"{self.name}: the request failed{kind}: {reason}", final=error_type in SAFETY)
        return result

    def _refusal(self, exc: InvalidOptions | ProviderError, error_type: str) -> InvalidOptions | ProviderError:
        """A content checker's refusal as a final ProviderError; any other error as it is."""
        reason = str(exc)
        if error_type in SAFETY or any(f"[{kind}]" in reason for kind in SAFETY):
            return ProviderError(f"{self.name}: refused by the content checker: {reason}", final=True)
        return exc

    def _stop(self, http: ProviderHttp, path: str) -> None:
        """Cancels the request within a few seconds; a failure is only logged."""
        try:
            http.request("PUT", f"{path}/cancel", time.monotonic() + CANCEL_SECONDS)
            log.info("provider.task_cancelled", provider=self.name, task_id=path.lstrip("/"))
        except (InvalidOptions, ProviderError) as exc:
            log.warning("provider.task_not_cancelled", provider=self.name, task_id=path.lstrip("/"), error=str(exc))


def describe_error(response: httpx.Response) -> str:
    """fal's reasons: a model error's `detail` list (each message with its [type]), or a
    request error's `detail` with its `error_type`; at most 300 characters."""
    error_type = response.headers.get("x-fal-error-type", "")
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        parts = [f"{d.get('msg', '')} [{d.get('type', '')}]" for d in detail if isinstance(d, dict)]
        text = "; ".join(parts)
    else:
        text = str(detail) if detail else response.reason_phrase
        error_type = str(body.get("error_type") or error_type) if isinstance(body, dict) else error_type
        text += f" [{error_type}]" if error_type else ""
    return text[:300]


def _video_url(result: Mapping[str, Any]) -> str:
    """The video's URL in a fal result ({"video": {"url": ...}}, or a list of videos)."""
    video = result.get("video")
    if video is None and isinstance(result.get("videos"), list) and result["videos"]:
        video = result["videos"][0]
    url = video.get("url") if isinstance(video, dict) else None
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise ProviderError("fal: the result holds no video URL")
    return url


def _logged_fraction(logs: Any) -> float:
    """The last percentage the model logged (0 when none), as a fraction below 1."""
    if not isinstance(logs, list):
        return 0.0
    for entry in reversed(logs):
        message = entry.get("message") if isinstance(entry, dict) else None
        match = PERCENT.search(message) if isinstance(message, str) else None
        if match:
            return min(0.9, float(match[1]) / 100)
    return 0.0
