"""A real Envoy from render_local in front of stand-ins for its upstreams.

The gateway's stand-in is an HTTP server that answers every request 200 with the path it was
asked, and keeps the paths clients asked; the jobs and providers services' stand-in is a gRPC
server whose GetJob answers the id it was given, with the health names Envoy's checks ask SERVING.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.edge import envoy_command, render_local
from tests.support.processes import free_port
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

HEALTH_NAMES = ("", "videogen.v1.JobService", "videogen.v1.ProviderService")


@dataclass
class Edge:
    """A started Envoy: its ports, and the paths the gateway's stand-in was asked."""

    port: int
    admin_port: int
    metrics_port: int
    config: Path
    gateway_paths: list[str] = field(default_factory=list)


class _EchoJobs(jobs_pb2_grpc.JobServiceServicer):
    def GetJob(self, request: jobs_pb2.GetJobRequest, context: grpc.ServicerContext) -> jobs_pb2.Job:
        return jobs_pb2.Job(id=request.id)


def _gateway_stand_in(paths: list[str]) -> ThreadingHTTPServer:
    class Echo(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            if self.headers.get("User-Agent") != "Envoy/HC":  # Envoy's own health checks
                paths.append(self.path)
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test reads the paths instead."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _services_stand_in() -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    jobs_pb2_grpc.add_JobServiceServicer_to_server(_EchoJobs(), server)  # type: ignore[abstract]
    checks = health.HealthServicer()
    for name in HEALTH_NAMES:
        checks.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def wait_until_upstreams_healthy(admin_port: int, envoy: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Waits until Envoy's health checks pass for every upstream, asking its admin interface
    (requests through the edge would spend its rate limit)."""
    deadline = time.monotonic() + timeout
    while True:
        assert envoy.poll() is None, "envoy exited"
        try:
            clusters = httpx.get(f"http://127.0.0.1:{admin_port}/clusters", timeout=2).text
        except httpx.TransportError:
            clusters = ""
        flags = [line for line in clusters.splitlines() if "::health_flags::" in line]
        if len(flags) >= 3 and all(line.endswith("::healthy") for line in flags if "envoy_admin" not in line):
            return
        assert time.monotonic() < deadline, f"upstreams not healthy:\n{clusters}"
        time.sleep(0.2)


@contextmanager
def edge_in_front(out_dir: Path, **render_options: Any) -> Iterator[Edge]:
    """Envoy rendered by render_local (with these options) before the stand-ins, all started and
    healthy; everything is stopped at the end."""
    paths: list[str] = []
    gateway = _gateway_stand_in(paths)
    services, grpc_port = _services_stand_in()
    edge = Edge(free_port(), free_port(), free_port(), out_dir / "envoy.yaml", paths)
    render_local(
        edge_port=edge.port,
        admin_port=edge.admin_port,
        metrics_port=edge.metrics_port,
        upstreams={
            "gateway": [("127.0.0.1", gateway.server_address[1])],
            "jobs": [("127.0.0.1", grpc_port)],
            "providers": [("127.0.0.1", grpc_port)],
        },
        out=edge.config,
        **render_options,
    )
    envoy = subprocess.Popen(envoy_command(edge.config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_upstreams_healthy(edge.admin_port, envoy)
        yield edge
    finally:
        envoy.terminate()
        envoy.wait(10)
        services.stop(None)
        gateway.shutdown()
        gateway.server_close()
