"""fal.ai's queue API on the shared fake server (tests only).

POST /{model path} submits (`Authorization: Key <key>`) and answers the request's URLs under
the model's app (owner/alias); GET .../requests/{id}/status walks `script` (IN_QUEUE with a
position, IN_PROGRESS with a logged percentage, COMPLETED); GET .../requests/{id} answers the
result as `outcome` says (a video, a runner failure, a content-policy refusal, an input
refusal); PUT .../requests/{id}/cancel cancels. Status, result and cancel answer 404 on any
path but the app's, as fal routes them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_provider import FakeProvider, Request, Response

APP = r"(?P<app>[^/]+/[^/]+)/requests/(?P<id>[^/]+)"


@dataclass
class FalRequest:
    """One submitted request and what the fake did with it."""

    id: str
    app: str
    model: str
    input: dict[str, Any]
    headers: dict[str, str]
    polls: int = 0
    results: int = 0
    completed: bool = False
    cancelled: bool = False
    statuses: list[str] = field(default_factory=list)


class FakeFal(FakeProvider):
    """A fake fal queue: point an entry's base_url at base_url."""

    def __init__(self, *, key: str) -> None:
        super().__init__(key_header="authorization", key_value=f"Key {key}")
        # Each status poll takes the next step; the last one repeats.
        self.script = ["IN_QUEUE:1", "IN_QUEUE:0", "IN_PROGRESS:40", "COMPLETED"]
        # video | error (the runner failed) | unsafe (content checker) | invalid (the model refused the input)
        self.outcome = "video"
        # Requests stay IN_PROGRESS until cancelled.
        self.hold = False
        # The first output URL has expired (403) by the time it is fetched; every one, with expire_all.
        self.expire_first = False
        self.expire_all = False
        self.requests: dict[str, FalRequest] = {}
        self._request_ids = itertools.count(1)
        self.route("PUT", rf"/{APP}/cancel", self._cancel)
        self.route("GET", rf"/{APP}/status", self._status)
        self.route("GET", rf"/{APP}", self._result)
        self.route("POST", r"/(?P<model>[^?]+)", self._submit)

    def submitted(self) -> list[FalRequest]:
        """The requests submitted so far, in order."""
        return list(self.requests.values())

    def _submit(self, request: Request) -> Response:
        model = request.match["model"].strip("/")
        parts = model.split("/")
        if len(parts) < 2:
            return Response(404, {"detail": "Application not found"})
        body = request.json()
        if not isinstance(body, dict) or not body.get("prompt"):
            return Response(422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}]})
        request_id = f"req-{next(self._request_ids):04d}-a1b2"
        app = "/".join(parts[:2])
        self.requests[request_id] = FalRequest(request_id, app, model, body, dict(request.headers))
        base = f"{self.base_url}/{app}/requests/{request_id}"
        return Response(
            200,
            {
                "request_id": request_id,
                "gateway_request_id": request_id,
                "status": "IN_QUEUE",
                "queue_position": 0,
                "response_url": base,
                "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel",
            },
        )

    def _find(self, request: Request) -> FalRequest | None:
        found = self.requests.get(request.match["id"])
        return found if found is not None and found.app == request.match["app"] else None

    def _status(self, request: Request) -> Response:
        found = self._find(request)
        if found is None:
            return Response(404, {"detail": "Request not found"})
        if found.cancelled:
            found.completed = True
            return Response(200, {"status": "COMPLETED", "logs": [], "error": "Request cancelled"})
        step = self.script[min(found.polls, len(self.script) - 1)]
        found.polls += 1
        if self.hold and step == "COMPLETED":
            step = "IN_PROGRESS:10"
        state, _, value = step.partition(":")
        found.statuses.append(state)
        if state == "IN_QUEUE":
            return Response(202, {"status": "IN_QUEUE", "queue_position": int(value)})
        if state == "IN_PROGRESS":
            logs = [{"message": f"sampling {value}%", "level": "INFO", "timestamp": "2026-12-02T10:00:00"}]
            return Response(202, {"status": "IN_PROGRESS", "logs": logs})
        found.completed = True
        body: dict[str, Any] = {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 1.5}}
        if self.outcome == "error":
            body.update(error="Runner disconnected while processing", error_type="runner_disconnected")
        return Response(200, body)

    def _result(self, request: Request) -> Response:
        found = self._find(request)
        if found is None:
            return Response(404, {"detail": "Request not found"})
        if not found.completed:
            return Response(400, {"detail": "Request is still in progress"})
        found.results += 1
        if self.outcome == "error":
            return Response(500, {"detail": "Runner disconnected", "error_type": "runner_disconnected"})
        if self.outcome in ("unsafe", "invalid"):
            kind, message = {
                "unsafe": ("content_policy_violation", "The content was flagged by a content checker."),
                "invalid": ("value_error", "duration must be one of 4s, 6s, 8s"),
            }[self.outcome]
            return Response(422, {"detail": [{"loc": ["body", "prompt"], "msg": message, "type": kind}]})
        name = f"{found.id}-{found.results}.mp4"
        url = self.file_url(name)
        if self.expire_all or (self.expire_first and found.results == 1):
            self.expired.add(name)
        return Response(200, {"video": {"url": url, "content_type": "video/mp4", "file_name": "output.mp4"}})

    def _cancel(self, request: Request) -> Response:
        found = self._find(request)
        if found is None:
            return Response(404, {"status": "NOT_FOUND"})
        if found.completed:
            return Response(400, {"status": "ALREADY_COMPLETED"})
        found.cancelled = True
        return Response(202, {"status": "CANCELLATION_REQUESTED"})
