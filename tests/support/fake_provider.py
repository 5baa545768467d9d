"""What every fake provider server shares: a threaded HTTP server on 127.0.0.1, routes by method
and path pattern, a log of calls, a key check, 429s on demand, and downloadable outputs that
can expire (tests only; each kind's fake speaks its documented protocol on top of it)."""

from __future__ import annotations

import itertools
import json
import re
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from services.core.generators.local import LocalRenderer
from services.core.job.options import JobOptions


def sample_video(seconds: float = 1, width: int = 96, height: int = 64, fps: int = 8) -> bytes:
    """A real H.264 MP4, as a provider would hand one back."""
    renderer = LocalRenderer()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sample.mp4"
        spec = renderer.spec(
            "fake provider",
            JobOptions.parse({"durationSeconds": seconds, "width": width, "height": height, "fps": fps}),
        )
        renderer.generate(spec, output=path, progress=lambda f, s: None, on_task=lambda task: None)
        return path.read_bytes()


SAMPLE = sample_video()


@dataclass
class Request:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    match: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    """What a route answers."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


Route = Callable[[Request], Response]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gives up is expected here, not worth a traceback."""


class FakeProvider:
    """A fake provider: add routes, start(), point a registry entry's base_url at base_url."""

    def __init__(self, *, key_header: str = "authorization", key_value: str = "") -> None:
        self.key_header, self.key_value = key_header.lower(), key_value
        # Answers 429 with Retry-After to this many next requests (any route).
        self.rate_limit = 0
        self.retry_after = "1"
        self.calls: list[Request] = []
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        # Outputs served at /files/<name>; an expired one answers 403 until refreshed.
        self.files: dict[str, bytes] = {}
        self.expired: set[str] = set()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.route("GET", r"/files/(?P<name>[^/]+)", self._file)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, method: str, pattern: str, handler: Route) -> None:
        """Answers method requests whose path fully matches pattern (named groups in match)."""
        self._routes.append((method, re.compile(pattern), handler))

    def file_url(self, name: str, content: bytes = SAMPLE) -> str:
        """Serves content at a URL of this fake (what an output URL points at)."""
        self.files[name] = content
        return f"{self.base_url}/files/{name}"

    def paths(self, method: str | None = None) -> list[str]:
        """The paths requested so far (of method, when given)."""
        return [c.path for c in self.calls if method is None or c.method == method]

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _file(self, request: Request) -> Response:
        name = request.match["name"]
        if name in self.expired:
            return Response(403, raw=b"<Error>Request has expired</Error>", content_type="application/xml")
        if name not in self.files:
            return Response(404, {"detail": "not found"})
        return Response(200, raw=self.files[name], content_type="video/mp4")

    def _answer(self, request: Request) -> Response:
        if request.path.startswith("/files/"):
            return self._file_route(request)
        if self.key_value and request.headers.get(self.key_header) != self.key_value:
            return Response(401, {"detail": "Invalid credentials"})
        with self.lock:
            if self.rate_limit > 0:
                self.rate_limit -= 1
                return Response(429, {"detail": "Request was throttled."}, {"Retry-After": self.retry_after})
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if method == request.method and match:
                request.match = match.groupdict()
                return handler(request)
        return Response(404, {"detail": f"no route {request.method} {request.path}"})

    def _file_route(self, request: Request) -> Response:
        match = re.fullmatch(r"/files/(?P<name>[^/]+)", request.path)
        request.match = match.groupdict() if match else {"name": ""}
        return self._file(request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with fake.lock:
                    fake.calls.append(request)
                response = fake._answer(request)
                payload = response.raw if response.raw is not None else json.dumps(response.body).encode()
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815 - http.server's names

        return Handler
