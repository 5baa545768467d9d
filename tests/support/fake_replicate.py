"""Replicate's predictions API on the shared fake server, under /v1 (tests only).

POST /v1/models/{owner}/{name}/predictions (or POST /v1/predictions with a version) creates a
prediction (`Authorization: Bearer <key>`), recording its Prefer and Cancel-After headers;
GET /v1/predictions/{id} walks `script` (starting, processing with a tqdm bar in the logs,
then the end `outcome` says: succeeded with a video URL, failed, failed by a safety filter,
canceled or aborted by its deadline); POST /v1/predictions/{id}/cancel cancels; GET
/v1/account answers who the key belongs to. Errors are problem details, as Replicate's are.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_provider import FakeProvider, Request, Response

ENDINGS = {
    "video": ("succeeded", None),
    "failed": ("failed", "CUDA out of memory"),
    "unsafe": ("failed", "Your input was flagged as sensitive (E005). Please try again with different inputs."),
    "canceled": ("canceled", None),
    "aborted": ("aborted", None),
}


@dataclass
class Prediction:
    """One prediction and what the fake did with it."""

    id: str
    model: str
    version: str | None
    input: dict[str, Any]
    headers: dict[str, str]
    polls: int = 0
    reads: int = 0
    status: str = "starting"
    cancelled: bool = False
    statuses: list[str] = field(default_factory=list)


class FakeReplicate(FakeProvider):
    """A fake Replicate: point an entry's base_url at api_url."""

    def __init__(self, *, key: str) -> None:
        super().__init__(key_header="authorization", key_value=f"Bearer {key}")
        # Each read takes the next step; the last one repeats. "end" is the outcome.
        self.script = ["starting", "processing:30", "processing:70", "end"]
        self.outcome = "video"
        # Predictions stay processing until cancelled.
        self.hold = False
        # The create call answers the finished prediction (sync mode within Prefer: wait).
        self.sync = False
        self.expire_first = False
        self.expire_all = False
        self.predictions: dict[str, Prediction] = {}
        self._prediction_ids = itertools.count(1)
        self.route("GET", r"/v1/account", lambda r: Response(200, {"type": "user", "username": "tester"}))
        self.route("POST", r"/v1/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions", self._create)
        self.route("POST", r"/v1/predictions", self._create)
        self.route("GET", r"/v1/predictions/(?P<id>[^/]+)", self._get)
        self.route("POST", r"/v1/predictions/(?P<id>[^/]+)/cancel", self._cancel)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    def created(self) -> list[Prediction]:
        """The predictions created so far, in order."""
        return list(self.predictions.values())

    def _create(self, request: Request) -> Response:
        body = request.json()
        version = body.get("version") if isinstance(body, dict) else None
        if "owner" in request.match:
            model = f"{request.match['owner']}/{request.match['name']}"
        elif isinstance(version, str):
            model = "versioned/model"
        else:
            return _problem(422, "Invalid request", "version is required")
        payload = body.get("input") if isinstance(body, dict) else None
        if not isinstance(payload, dict) or not payload.get("prompt"):
            return _problem(422, "Input validation failed", "prompt: prompt is required")
        prediction_id = f"p{next(self._prediction_ids):04d}abcd"
        prediction = Prediction(prediction_id, model, version, payload, dict(request.headers))
        self.predictions[prediction_id] = prediction
        if self.sync and request.headers.get("prefer", "").startswith("wait"):
            prediction.status = ENDINGS[self.outcome][0]
        return Response(201, self._object(prediction))

    def _get(self, request: Request) -> Response:
        prediction = self.predictions.get(request.match["id"])
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        prediction.reads += 1
        if prediction.status in ("starting", "processing"):
            step = self.script[min(prediction.polls, len(self.script) - 1)]
            prediction.polls += 1
            if self.hold and step == "end":
                step = "processing:10"
            state, _, _ = step.partition(":")
            prediction.status = ENDINGS[self.outcome][0] if state == "end" else state
            prediction.statuses.append(step)
        return Response(200, self._object(prediction))

    def _cancel(self, request: Request) -> Response:
        prediction = self.predictions.get(request.match["id"])
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        if prediction.status in ("starting", "processing"):
            prediction.status, prediction.cancelled = "canceled", True
        return Response(200, self._object(prediction))

    def _object(self, prediction: Prediction) -> dict[str, Any]:
        step = prediction.statuses[-1] if prediction.statuses else ""
        percent = int(step.partition(":")[2] or 0)
        logs = f"loading\n{percent:3d}%|{'#' * (percent // 10):<10}| {percent}/100 [00:03<00:07]\n" if percent else ""
        status, error = prediction.status, None
        output: str | None = None
        if status == "succeeded":
            name = f"{prediction.id}-{prediction.reads}.mp4"
            output = self.file_url(name)
            if self.expire_all or (self.expire_first and len(self.files) == 1):
                self.expired.add(name)
        elif status == "failed":
            error = ENDINGS[self.outcome][1]
        base = f"{self.api_url}/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": prediction.version or "hidden",
            "status": status,
            "input": prediction.input,
            "output": output,
            "logs": logs,
            "error": error,
            "metrics": {"predict_time": 1.2} if status == "succeeded" else {},
            "created_at": "2026-12-02T10:00:00.000Z",
            "urls": {"get": base, "cancel": f"{base}/cancel", "web": f"https://replicate.com/p/{prediction.id}"},
        }


def _problem(status: int, title: str, detail: str) -> Response:
    return Response(status, {"type": "about:blank", "title": title, "status": status, "detail": detail})
