"""A fake of Runway's API on FakeProvider, speaking its documented protocol (tests only).

POST /v1/text_to_video and /v1/image_to_video create a task ({"id"}); each GET /v1/tasks/{id}
moves it one step along `script` (PENDING, THROTTLED, RUNNING with progress, then SUCCEEDED,
or FAILED with `failure`); a SUCCEEDED task answers a freshly signed output URL on every read,
the first `expired_outputs` of them already expired; DELETE /v1/tasks/{id} cancels a running
task (CANCELLED) or deletes an ended one; GET /v1/organization answers the credit balance.
Every call needs the key and X-Runway-Version; 429s come from FakeProvider's `rate_limit`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_provider import FakeProvider, Request, Response

VERSION = "2024-11-06"
# Each read of a task moves it one step: (status, progress).
SCRIPT: list[tuple[str, float | None]] = [
    ("PENDING", None),
    ("THROTTLED", None),
    ("RUNNING", 0.25),
    ("RUNNING", 0.75),
    ("SUCCEEDED", None),
]


@dataclass
class Task:
    """One task the fake holds."""

    id: str
    body: dict[str, Any]
    step: int = -1
    status: str = "PENDING"
    progress: float | None = None
    failure: tuple[str, str] | None = None
    reads: int = 0
    outputs: list[str] = field(default_factory=list)


class FakeRunway(FakeProvider):
    """Runway's task API; point a `runway` entry's base_url at base_url."""

    def __init__(self, *, api_key: str) -> None:
        super().__init__(key_header="authorization", key_value=f"Bearer {api_key}")
        self.script = list(SCRIPT)
        # The failure (failureCode, failure) tasks end with instead of SUCCEEDED, when set.
        self.fail_with: tuple[str, str] | None = None
        # While set, running tasks stay RUNNING (a long render the test interrupts).
        self.hold = False
        # How many of the next output URLs handed out have already expired.
        self.expired_outputs = 0
        self.tasks: dict[str, Task] = {}
        self.created: list[tuple[str, dict[str, Any]]] = []
        self.deleted: list[str] = []
        self.route("POST", r"/v1/(?P<endpoint>text_to_video|image_to_video)", self._create)
        self.route("GET", r"/v1/tasks/(?P<id>[^/]+)", self._read)
        self.route("DELETE", r"/v1/tasks/(?P<id>[^/]+)", self._delete)
        self.route("GET", r"/v1/organization", self._organization)

    def _answer(self, request: Request) -> Response:
        if not request.path.startswith("/files/") and request.headers.get("x-runway-version") != VERSION:
            return Response(400, {"error": "Invalid or missing X-Runway-Version header"})
        return super()._answer(request)

    def _create(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not body.get("model") or not body.get("ratio"):
            return Response(400, {"error": "Validation of body failed: model and ratio are required"})
        task = Task(id=str(uuid.uuid4()), body=body)
        with self.lock:
            self.tasks[task.id] = task
            self.created.append((request.match["endpoint"], body))
        return Response(200, {"id": task.id})

    def _read(self, request: Request) -> Response:
        with self.lock:
            task = self.tasks.get(request.match["id"])
            if task is None:
                return Response(404, {"error": "Task not found"})
            task.reads += 1
            self._advance(task)
            answer: dict[str, Any] = {"id": task.id, "createdAt": "2026-12-02T10:00:00.000Z", "status": task.status}
            if task.status == "RUNNING":
                answer["progress"] = task.progress
            elif task.status == "FAILED" and task.failure:
                answer["failureCode"], answer["failure"] = task.failure
            elif task.status == "SUCCEEDED":
                answer["output"] = [self._signed_output(task)]
        return Response(200, answer)

    def _advance(self, task: Task) -> None:
        if task.status in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return
        if self.hold and task.status == "RUNNING":
            return
        task.step = min(task.step + 1, len(self.script) - 1)
        task.status, task.progress = self.script[task.step]
        if task.status == "SUCCEEDED" and self.fail_with is not None:
            task.status, task.failure = "FAILED", self.fail_with

    def _signed_output(self, task: Task) -> str:
        """A new signed URL for the task's video at each read, as Runway's are."""
        name = f"{task.id}-{len(task.outputs)}.mp4"
        url = self.file_url(name)
        if self.expired_outputs > 0:
            self.expired_outputs -= 1
            self.expired.add(name)
        task.outputs.append(url)
        return url

    def _delete(self, request: Request) -> Response:
        with self.lock:
            task = self.tasks.get(request.match["id"])
            if task is None:
                return Response(404, {"error": "Task not found"})
            self.deleted.append(task.id)
            if task.status in ("PENDING", "THROTTLED", "RUNNING"):
                task.status = "CANCELLED"
            else:
                del self.tasks[task.id]
        return Response(204, raw=b"")

    def _organization(self, request: Request) -> Response:
        return Response(200, {"creditBalance": 1000, "tier": {"maxMonthlyCreditSpend": 10000, "models": {}},
                              "usage": {"models": {}}})  # fmt: skip

    def generation_calls(self) -> list[str]:
        """The paths of calls that would have paid for a generation."""
        return [c.path for c in self.calls if c.method == "POST"]
