"""A fake of Luma's Agents API on FakeProvider, speaking its documented protocol (tests only).

POST /v1/generations creates a generation (queued); each GET /v1/generations/{id} moves it one
step along `script` (queued, processing, completed), or to failed with `fail_with`
(failure_code, failure_reason); a completed generation answers a freshly presigned output URL
on every read, the first `expired_outputs` of them already expired. There is no cancel endpoint
(DELETE answers 404, as for any unknown route). Every call needs the Bearer key; 429s come from
FakeProvider's `rate_limit`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support.fake_provider import FakeProvider, Request, Response

SCRIPT = ["queued", "processing", "processing", "completed"]
ASPECT_RATIOS = {"3:1", "2:1", "21:9", "16:9", "4:3", "3:2", "1:1", "3:4", "2:3", "9:16", "1:2", "1:3"}


@dataclass
class Generation:
    """One generation the fake holds."""

    id: str
    body: dict[str, Any]
    step: int = 0
    state: str = "queued"
    failure: tuple[str, str] | None = None
    outputs: list[str] = field(default_factory=list)


class FakeLuma(FakeProvider):
    """Luma's generations API; point a `luma` entry's base_url at base_url + "/v1"."""

    def __init__(self, *, api_key: str) -> None:
        super().__init__(key_header="authorization", key_value=f"Bearer {api_key}")
        self.script = list(SCRIPT)
        self.fail_with: tuple[str, str] | None = None
        # While set, processing generations stay processing.
        self.hold = False
        self.expired_outputs = 0
        self.generations: dict[str, Generation] = {}
        self.created: list[dict[str, Any]] = []
        self.route("POST", r"/v1/generations", self._create)
        self.route("GET", r"/v1/generations/(?P<id>[^/]+)", self._read)

    def _create(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict) or not body.get("prompt"):
            return Response(400, {"detail": "prompt: field required"})
        if body.get("aspect_ratio") not in ASPECT_RATIOS:
            return Response(422, {"detail": f"aspect_ratio {body.get('aspect_ratio')!r} is not valid"})
        generation = Generation(id=str(uuid.uuid4()), body=body)
        with self.lock:
            self.generations[generation.id] = generation
            self.created.append(body)
            return Response(201, self._view(generation))

    def _read(self, request: Request) -> Response:
        with self.lock:
            generation = self.generations.get(request.match["id"])
            if generation is None:
                return Response(404, {"detail": "Generation not found"})
            self._advance(generation)
            return Response(200, self._view(generation))

    def _advance(self, generation: Generation) -> None:
        if generation.state in ("completed", "failed") or (self.hold and generation.state == "processing"):
            return
        generation.step = min(generation.step + 1, len(self.script) - 1)
        generation.state = self.script[generation.step]
        if generation.state == "completed" and self.fail_with is not None:
            generation.state, generation.failure = "failed", self.fail_with

    def _view(self, generation: Generation) -> dict[str, Any]:
        code, reason = generation.failure or (None, None)
        view: dict[str, Any] = {
            "id": generation.id,
            "created_at": "2026-12-02T10:00:00Z",
            "model": generation.body.get("model"),
            "type": generation.body.get("type"),
            "state": generation.state,
            "failure_code": code,
            "failure_reason": reason,
            "output": None,
        }
        if generation.state == "completed":
            view["output"] = [{"type": "video", "url": self._presigned(generation)}]
        return view

    def _presigned(self, generation: Generation) -> str:
        name = f"{generation.id}-{len(generation.outputs)}.mp4"
        url = self.file_url(name)
        if self.expired_outputs > 0:
            self.expired_outputs -= 1
            self.expired.add(name)
        generation.outputs.append(url)
        return url
