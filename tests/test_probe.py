"""`python -m services.probe`, the healthcheck command of the containers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from services.jobs.server import SERVICE_NAME, JobsServer
from tests.support.processes import free_port


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.probe", "--timeout", "3", *args], capture_output=True, text=True, timeout=30
    )


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def test_grpc_probe_passes_for_a_serving_service_and_fails_otherwise(jobs_server: JobsServer) -> None:
    target = f"127.0.0.1:{jobs_server.port}"
    # The server runs on this event loop: the probes run in threads.
    serving = await asyncio.to_thread(probe, "grpc", target, "--service", SERVICE_NAME)
    liveness = await asyncio.to_thread(probe, "grpc", target, "--service", "liveness")
    unknown = await asyncio.to_thread(probe, "grpc", target, "--service", "videogen.v1.Nothing")
    nobody = await asyncio.to_thread(probe, "grpc", f"127.0.0.1:{free_port()}")

    assert serving.returncode == 0, serving.stderr
    assert liveness.returncode == 0, liveness.stderr
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    assert nobody.returncode == 1 and "UNAVAILABLE" in nobody.stderr


def test_http_probe_needs_a_2xx(http_port: int) -> None:
    assert probe("http", f"http://127.0.0.1:{http_port}/health").returncode == 0
    failing = probe("http", f"http://127.0.0.1:{http_port}/other")
    assert failing.returncode == 1 and "HTTP 503" in failing.stderr
    assert probe("http", f"http://127.0.0.1:{free_port()}/health").returncode == 1


def test_a_bad_timeout_is_a_usage_error() -> None:
    result = probe("--timeout", "0", "http", "http://127.0.0.1:1/")

    assert result.returncode == 2 and "--timeout" in result.stderr
