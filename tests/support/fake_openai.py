"""A local HTTP server speaking the OpenAI Videos API, with faults the tests switch on.

POST /v1/videos (multipart) creates a video; GET /v1/videos/{id} moves it queued -> in_progress
-> completed (or failed); GET /v1/videos/{id}/content answers a real MP4; DELETE removes it;
GET /v1/videos lists. Faults: every call answers 500 (`failing`), videos fail (`fail_videos`),
answers are late (`delay`), the next N calls answer 429 with Retry-After (`rate_limit`).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from services.core.providers.local import LocalRenderer


def _sample_video() -> bytes:
    import tempfile

    renderer = LocalRenderer()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.mp4"
        spec = renderer.spec("fake sora", {"durationSeconds": 1, "width": 96, "height": 64, "fps": 8})
        renderer.generate(spec, output=path, progress=lambda f, s: None, on_task=lambda task_id: None)
        return path.read_bytes()


SAMPLE = _sample_video()


class _QuietServer(ThreadingHTTPServer):
    """A client that gives up on a slow answer is expected here, not worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return


class FakeOpenAI:
    """One fake endpoint; base_url is what a registry entry points at."""

    def __init__(self, *, api_key: str = "") -> None:
        self.api_key = api_key
        self.failing = False
        self.fail_videos = False
        self.delay = 0.0
        self.rate_limit = 0
        self.retry_after = 1
        self.calls: list[tuple[str, str]] = []
        self.created: list[dict[str, Any]] = []
        self._videos: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                fake._serve(self, "GET")

            def do_POST(self) -> None:
                fake._serve(self, "POST")

            def do_DELETE(self) -> None:
                fake._serve(self, "DELETE")

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler, method: str) -> None:
        path = request.path.split("?")[0]
        with self._lock:
            self.calls.append((method, path))
            limited = self.rate_limit > 0
            if limited:
                self.rate_limit -= 1
        if self.delay:
            time.sleep(self.delay)
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _json(request, 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}})
        if limited:
            return _json(
                request, 429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": str(self.retry_after)}
            )
        if self.failing:
            return _json(request, 500, {"error": {"message": "The server had an error"}})
        if method == "POST" and path == "/v1/videos":
            return self._create(request)
        if method == "GET" and path == "/v1/videos":
            return _json(request, 200, {"object": "list", "data": [], "has_more": False})
        parts = path.split("/")
        video = self._videos.get(parts[3]) if len(parts) >= 4 else None
        if video is None:
            return _json(request, 404, {"error": {"message": "Video not found"}})
        if method == "DELETE":
            self._videos.pop(video["id"], None)
            return _json(request, 200, {"id": video["id"], "object": "video.deleted", "deleted": True})
        if len(parts) == 5 and parts[4] == "content":
            return _bytes(request, SAMPLE)
        return _json(request, 200, self._advance(video))

    def _create(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length", "0"))
        body = request.rfile.read(length)
        header = f"Content-Type: {request.headers.get('Content-Type')}\r\n\r\n".encode()
        form = {
            part.get_param("name", header="content-disposition"): part.get_content()
            for part in BytesParser(policy=email_policy).parsebytes(header + body).iter_parts()
        }
        if not form.get("prompt"):
            return _json(request, 400, {"error": {"message": "prompt is required"}})
        video = {
            "id": f"video_{next(self._ids)}",
            "object": "video",
            "status": "queued",
            "progress": 0,
            "model": form.get("model", "sora-2"),
            "seconds": form.get("seconds", "4"),
            "size": form.get("size", "720x1280"),
            "prompt": form["prompt"],
            "created_at": int(time.time()),
            "error": None,
        }
        self._videos[video["id"]] = video
        self.created.append(dict(video))
        return _json(request, 200, video)

    def _advance(self, video: dict[str, Any]) -> dict[str, Any]:
        if video["status"] == "queued":
            video.update(status="in_progress", progress=50)
        elif video["status"] == "in_progress" and self.fail_videos:
            video.update(status="failed", error={"code": "moderation_blocked", "message": "blocked by moderation"})
        elif video["status"] == "in_progress":
            video.update(status="completed", progress=100, completed_at=int(time.time()))
        return video


def _json(
    request: BaseHTTPRequestHandler, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(body).encode()
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    for key, value in (headers or {}).items():
        request.send_header(key, value)
    request.end_headers()
    request.wfile.write(data)


def _bytes(request: BaseHTTPRequestHandler, data: bytes) -> None:
    request.send_response(200)
    request.send_header("Content-Type", "video/mp4")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)
