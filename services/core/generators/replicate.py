"""The `replicate` kind: any video model on Replicate, named owner/name or owner/name:version.

Create a prediction (POST /models/{owner}/{name}/predictions, or POST /predictions with the
version) with `Prefer: wait=N` (the call holds up to one poll interval and may return the
finished prediction) and `Cancel-After` (Replicate stops it by itself at our timeout, even if
this worker dies); poll GET /predictions/{id} through starting and processing (the model's
logged percentages as progress) to succeeded, failed, canceled or aborted; download the output
at once (Replicate deletes an API prediction's files after an hour). A cancelled job or a
timeout cancels the prediction (POST /predictions/{id}/cancel). The probe reads the account.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from services.core.generators.base import (
    InvalidOptions,
    JobCancelled,
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    TaskCallback,
    VideoSpec,
)
from services.core.generators.catalog import REPLICATE_MODELS, REPLICATE_OTHER
from services.core.generators.hosted import CANCEL_SECONDS, model_input
from services.core.generators.http import ProviderHttp, fetch_video
from services.core.generators.registry import ProviderConfig
from services.core.generators.spec_mapping import hosted_spec
from services.core.job.options import JobOptions
from services.core.logging import get_logger

log = get_logger(__name__)
MODEL = re.compile(r"^(?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+)(?::(?P<version>[A-Za-z0-9]{1,128}))?$")
PREDICTION_ID = re.compile(r"^[A-Za-z0-9]{1,128}$")
RUNNING = frozenset({"starting", "processing"})
# Longest Replicate holds a create call open (its sync mode).
MAX_WAIT = 60
# Replicate reports a refusal only in the error text: these words mark a safety filter's.
SAFETY = re.compile(r"nsfw|safety|sensitive|content polic|moderat|flagged", re.IGNORECASE)
# A progress bar in the logs, as tqdm writes it: " 45%|####      | 45/100".
PERCENT = re.compile(r"^\s*(\d{1,3})%\s*\|", re.MULTILINE)


def cancel_after(seconds: float) -> str:
    """Seconds as a Cancel-After duration: 90 -> "1m30s", 3600 -> "1h"."""
    left = max(1, math.ceil(seconds))
    hours, left = divmod(left, 3600)
    minutes, left = divmod(left, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{left}s" if left else ""]
    return "".join(parts)


class Replicate:
    """A client of Replicate's predictions API for one registry entry."""

    def __init__(self, config: ProviderConfig) -> None:
        self.name = config.name
        self._config = config

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        """The job's options at the model's nearest legal values."""
        spec = hosted_spec(self._config, prompt, options, model=model)
        match = MODEL.fullmatch(spec.model)
        if match is None or not (match["owner"].strip(".") and match["name"].strip(".")):
            raise InvalidOptions(f"metadata.model: {spec.model!r} is not a Replicate model (owner/name[:version])")
        return spec

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Creates the prediction, waits for it, downloads its video to output."""
        deadline = time.monotonic() + self._config.timeout_seconds
        with closing(self._http()) as http:
            prediction = self._create(http, spec, deadline)
            on_task(prediction["id"])
            try:
                prediction = self._wait(http, prediction, deadline, progress)
            except (JobCancelled, ProviderError):
                # Cancelled, timed out or unreachable while it may still run: nobody pays for it.
                self._stop(http, prediction["id"])
                raise
            self._check_succeeded(prediction)
            finished = [prediction]
            progress(0.95, "downloading")
            return fetch_video(
                http,
                output,
                deadline,
                # The prediction again on a retry: its output URL as Replicate gives it now.
                url=lambda: _video_url(finished.pop() if finished else self._read(http, prediction["id"], deadline)),
                max_bytes=self._config.max_video_bytes,
                model=spec.model,
            )

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Cancels the prediction; one already finished or unknown is fine."""
        if not PREDICTION_ID.fullmatch(task_id):
            log.warning("provider.unknown_task", provider=self.name, task_id=task_id[:200])
            return
        with closing(self._http()) as http:
            try:
                http.request("POST", f"/predictions/{task_id}/cancel", time.monotonic() + timeout)
            except InvalidOptions:
                return
            except ProviderError as exc:
                if "HTTP 404" not in str(exc):
                    raise

    def probe(self, timeout: float) -> None:
        """Reads the account the key belongs to: free, and a refused key answers 401."""
        with closing(self._http()) as http:
            http.json("GET", "/account", time.monotonic() + timeout)

    def _http(self) -> ProviderHttp:
        key = self._config.api_key()
        headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
        return ProviderHttp(self._config, headers=headers)

    def _create(self, http: ProviderHttp, spec: VideoSpec, deadline: float) -> dict[str, Any]:
        match = MODEL.fullmatch(spec.model)
        assert match is not None  # spec() checked it
        base = match["owner"] + "/" + match["name"]
        style = REPLICATE_MODELS[base].style if base in REPLICATE_MODELS else REPLICATE_OTHER
        body: dict[str, Any] = {"input": model_input(spec, style)}
        path = f"/models/{base}/predictions"
        if match["version"]:
            body["version"], path = match["version"], "/predictions"
        wait = max(1, min(MAX_WAIT, int(self._config.poll_interval_seconds)))
        headers = {"Prefer": f"wait={wait}", "Cancel-After": cancel_after(self._config.timeout_seconds)}
        try:
            prediction = http.json("POST", path, deadline, json=body, headers=headers)
        except InvalidOptions as exc:
            if SAFETY.search(str(exc)):
                raise ProviderError(f"{self.name}: refused by a safety filter: {exc}", final=True) from None
            raise
        return self._checked(prediction)

    def _wait(
        self, http: ProviderHttp, prediction: dict[str, Any], deadline: float, progress: ProgressCallback
    ) -> dict[str, Any]:
        """Polls until the prediction leaves starting and processing."""
        done = 0.0
        while prediction["status"] in RUNNING:
            if prediction["status"] == "starting":
                progress(0.0, "starting (queued or booting)")
            else:
                done = max(done, _logged_fraction(prediction.get("logs")))
                progress(done, "processing")
            if time.monotonic() + self._config.poll_interval_seconds >= deadline:
                raise ProviderError(f"{self.name}: no video within {self._config.timeout_seconds:g}s")
            time.sleep(self._config.poll_interval_seconds)
            prediction = self._read(http, prediction["id"], deadline)
        return prediction

    def _read(self, http: ProviderHttp, prediction_id: str, deadline: float) -> dict[str, Any]:
        return self._checked(
            http.poll(f"/predictions/{prediction_id}", deadline, timeout_seconds=self._config.timeout_seconds)
        )

    def _checked(self, prediction: Any) -> dict[str, Any]:
        """The prediction, when it is one (an id and a status we know)."""
        if not isinstance(prediction, dict) or not PREDICTION_ID.fullmatch(str(prediction.get("id", ""))):
            raise ProviderError(f"{self.name}: the answer is not a prediction")
        if prediction.get("status") not in {*RUNNING, "succeeded", "failed", "canceled", "aborted"}:
            raise ProviderError(f"{self.name}: unknown prediction status {str(prediction.get('status'))[:40]!r}")
        return prediction

    def _check_succeeded(self, prediction: Mapping[str, Any]) -> None:
        """ProviderError for a prediction that ended without a video (final for a safety refusal)."""
        status, error = prediction["status"], str(prediction.get("error") or "")[:300]
        if status == "succeeded":
            return
        if status == "failed":
            reason = error or "no reason"
            raise ProviderError(f"{self.name}: the prediction failed: {reason}", final=bool(SAFETY.search(error)))
        if status == "aborted":
            raise ProviderError(f"{self.name}: the prediction was aborted before it started (its deadline passed)")
        raise ProviderError(f"{self.name}: the prediction was canceled (its deadline passed or someone canceled it)")

    def _stop(self, http: ProviderHttp, prediction_id: str) -> None:
        """Cancels the prediction within a few seconds; a failure is only logged."""
        try:
            http.request("POST", f"/predictions/{prediction_id}/cancel", time.monotonic() + CANCEL_SECONDS)
            log.info("provider.task_cancelled", provider=self.name, task_id=prediction_id)
        except (InvalidOptions, ProviderError) as exc:
            log.warning("provider.task_not_cancelled", provider=self.name, task_id=prediction_id, error=str(exc))


def _video_url(prediction: Mapping[str, Any]) -> str:
    """The video's URL in a prediction's output: a URL, a list of them, or {"video": URL}."""
    output = prediction.get("output")
    if isinstance(output, list):
        output = next((item for item in output if isinstance(item, str)), None)
    elif isinstance(output, dict):
        output = output.get("video") or output.get("url")
    if not isinstance(output, str) or not output.startswith(("https://", "http://")):
        raise ProviderError("replicate: the prediction's output holds no video URL")
    return output


def _logged_fraction(logs: Any) -> float:
    """The last progress bar's percentage in the logs (0 when none), below 1."""
    found = PERCENT.findall(logs) if isinstance(logs, str) else []
    return min(0.9, int(found[-1]) / 100) if found else 0.0
