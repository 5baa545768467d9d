"""A fake server speaking OpenAI's Videos API (as vLLM-Omni and LiteLLM's proxy do, or Together's
JSON variant), on the shared FakeProvider, with faults the tests switch on.

POST /v1/videos (multipart; JSON when `together`) creates a video `queued`; each GET
/v1/videos/{id} moves it on: `queued` for `queued_polls` reads, `in_progress` through `steps`
(its `progress`), then `completed` (or `failed`). GET /v1/videos/{id}/content answers a real
MP4 (Together-style answers carry `outputs.video_url` instead, a fresh URL at each read); DELETE
removes it; GET /v1/videos lists. Faults: every call answers 500 (`failing`), answers are late
(`delay`), videos fail for moderation (`fail_videos`) or another reason (`fail_reason`), the
content answers 404 a few times (`content_misses`), the first output URL has expired
(`expire_first_output`), and FakeProvider's `rate_limit` answers 429 with Retry-After.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import default as email_policy
from typing import Any

from tests.support.fake_provider import SAMPLE, FakeProvider, Request, Response


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart create."""

    filename: str
    content_type: str
    data: bytes


def parse_multipart(request: Request) -> tuple[dict[str, str], dict[str, Upload]]:
    """The text fields and the files of a multipart/form-data body."""
    header = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
    fields: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for part in BytesParser(policy=email_policy).parsebytes(header + request.body).iter_parts():
        name = part.get_param("name", header="content-disposition")
        decoded = part.get_payload(decode=True)
        payload = decoded if isinstance(decoded, bytes) else b""
        if part.get_filename():
            files[str(name)] = Upload(part.get_filename() or "", part.get_content_type(), payload)
        else:
            fields[str(name)] = payload.decode()
    return fields, files


class FakeOpenAI(FakeProvider):
    """One fake endpoint; base_url (…/v1) is what a registry entry points at."""

    def __init__(self, *, api_key: str = "", together: bool = False) -> None:
        super().__init__(key_header="authorization", key_value=f"Bearer {api_key}" if api_key else "")
        self.together = together
        self.failing = False
        self.delay = 0.0
        self.fail_videos = False
        self.fail_reason = ""
        self.queued_polls = 0
        self.steps = [50]
        self.content_misses = 0
        self.expire_first_output = False
        # What each create asked: the fields (multipart) or the JSON body, and the files.
        self.created: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Upload]] = []
        self.deleted: list[str] = []
        self._videos: dict[str, dict[str, Any]] = {}
        self._reads: dict[str, int] = {}
        prefix = "/v1/videos"
        self.route("POST", prefix, self._guarded(self._create))
        self.route("GET", prefix, self._guarded(lambda r: Response(200, {"object": "list", "data": []})))
        self.route("GET", prefix + r"/(?P<id>[^/]+)", self._guarded(self._read))
        self.route("GET", prefix + r"/(?P<id>[^/]+)/content", self._guarded(self._content))
        self.route("DELETE", prefix + r"/(?P<id>[^/]+)", self._guarded(self._delete))

    @property
    def api_key(self) -> str:
        """The key the fake takes (a test may change it: our key is then wrong)."""
        return self.key_value.removeprefix("Bearer ")

    @api_key.setter
    def api_key(self, key: str) -> None:
        self.key_value = f"Bearer {key}" if key else ""

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def file_url(self, name: str, content: bytes = SAMPLE) -> str:
        self.files[name] = content
        return f"{self.root_url}/files/{name}"

    def _guarded(self, handler: Any) -> Any:
        def guarded(request: Request) -> Response:
            if self.delay:
                time.sleep(self.delay)
            if self.failing:
                return Response(500, {"error": {"message": "The server had an error", "type": "server_error"}})
            response: Response = handler(request)
            return response

        return guarded

    def _create(self, request: Request) -> Response:
        if self.together:
            form: dict[str, Any] = request.json()
            files: dict[str, Upload] = {}
        else:
            form, files = parse_multipart(request)
        if not form.get("prompt"):
            return Response(400, {"error": {"message": "prompt is required", "param": "prompt"}})
        video_id = f"video_{next(self.ids)}"
        video: dict[str, Any] = {
            "id": video_id,
            "object": "video",
            "status": "queued",
            "progress": 0,
            "model": form.get("model") or "served-model",
            "seconds": str(form.get("seconds", "4")),
            "size": form.get("size", "720x1280"),
            "created_at": int(time.time()),
            "error": None,
        }
        with self.lock:
            self._videos[video_id] = video
            self._reads[video_id] = 0
            self.created.append(dict(form))
            self.uploads.append(files)
        return Response(200, dict(video))

    def _read(self, request: Request) -> Response:
        video = self._videos.get(request.match["id"])
        if video is None:
            return Response(404, {"error": {"message": "Video not found", "code": "not_found"}})
        with self.lock:
            self._advance(video)
            answer = dict(video)
        if self.together and video["status"] == "completed":
            answer["outputs"] = {"cost": 0.28, "video_url": self._output_url(video["id"])}
        return Response(200, answer)

    def _advance(self, video: dict[str, Any]) -> None:
        reads = self._reads[video["id"]] = self._reads[video["id"]] + 1
        if video["status"] in ("completed", "failed"):
            return
        if reads <= self.queued_polls:
            return
        step = reads - self.queued_polls - 1
        if step < len(self.steps):
            video.update(status="in_progress", progress=self.steps[step])
        elif self.fail_videos:
            video.update(status="failed", error={"code": "moderation_blocked", "message": "blocked by moderation"})
        elif self.fail_reason:
            video.update(status="failed", error={"code": "internal_error", "message": self.fail_reason})
        else:
            video.update(status="completed", progress=100, completed_at=int(time.time()))

    def _output_url(self, video_id: str) -> str:
        name = f"{video_id}-{next(self.ids)}.mp4"
        url = self.file_url(name)
        if self.expire_first_output:
            self.expire_first_output = False
            self.expired.add(name)
        return url

    def _content(self, request: Request) -> Response:
        video = self._videos.get(request.match["id"])
        if video is None or video["status"] != "completed":
            return Response(404, {"error": {"message": "Video not found"}})
        with self.lock:
            if self.content_misses > 0:
                self.content_misses -= 1
                return Response(404, {"error": {"message": "Video content is not available yet"}})
        return Response(200, raw=SAMPLE, content_type="video/mp4")

    def _delete(self, request: Request) -> Response:
        video_id = request.match["id"]
        with self.lock:
            video = self._videos.pop(video_id, None)
        if video is None:
            return Response(404, {"error": {"message": "Video not found"}})
        self.deleted.append(video_id)
        return Response(200, {"id": video_id, "object": "video.deleted", "deleted": True})
