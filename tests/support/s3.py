"""moto's standalone S3 server for the tests, in a process of its own, and fixtures around it.

moto serves the S3 API but does not check when a presigned URL expires; the server here adds
that one rule of S3's (403 AccessDenied "Request has expired" past X-Amz-Date + X-Amz-Expires),
so that the tests can see an expired URL refused. Run as `python -m tests.support.s3 PORT`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.config import Config

from tests.support.processes import ROOT, free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
ACCESS_KEY_ID = "test-access-key"
SECRET_ACCESS_KEY = "test-secret-access-key-0123456789"
REGION = "us-east-1"
_EXPIRED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
)


def expiring(app: WsgiApp) -> WsgiApp:
    """app, refusing presigned requests past their expiry as S3 does."""

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        expires = _expiry(parse_qs(environ.get("QUERY_STRING", "")))
        if expires is not None and datetime.now(UTC) > expires:
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [_EXPIRED]
        return app(environ, start_response)

    return checked


def _expiry(query: dict[str, list[str]]) -> datetime | None:
    """When a presigned request expires: signature version 4's date + seconds, or version 2's epoch."""
    if "X-Amz-Expires" in query and "X-Amz-Date" in query:
        signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return signed + timedelta(seconds=int(query["X-Amz-Expires"][0]))
    if "Expires" in query and "AWSAccessKeyId" in query:
        return datetime.fromtimestamp(int(query["Expires"][0]), UTC)
    return None


def serve(port: int) -> None:
    """Serves moto's S3 (with the expiry rule) on 127.0.0.1:port until killed."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class Quiet(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            """No line per request."""

    app = expiring(DomainDispatcherApplication(create_backend_app))
    make_server("127.0.0.1", port, app, threaded=True, request_handler=Quiet).serve_forever()


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Waits until something accepts connections on port (the process still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"the S3 server did not listen on {port} within {timeout} s")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The endpoint of a moto S3 server started for this run."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tests.support.s3", str(port)], cwd=ROOT)
    try:
        wait_listening(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def s3_client(endpoint: str) -> S3Client:
    """A client of the test server, as an operator's tools would use it."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket for one test."""
    name = f"vg-{uuid.uuid4().hex[:16]}"
    s3_client(s3_endpoint).create_bucket(Bucket=name)
    return name


def s3_settings(endpoint: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    """The settings (as keyword values) of the S3 backend on the test server."""
    return {
        "media_backend": "s3",
        "s3_endpoint_url": endpoint,
        "s3_bucket": bucket,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY_ID,
        "s3_secret_access_key": SECRET_ACCESS_KEY,
        "s3_addressing_style": "path",
        **overrides,
    }


def object_keys(endpoint: str, bucket: str) -> set[str]:
    """The names of the objects in bucket."""
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return {item["Key"] for item in listing.get("Contents", [])}


if __name__ == "__main__":
    serve(int(sys.argv[1]))
