"""`python -m services.probe`: a health check for container healthchecks, with no curl in the image.

    python -m services.probe grpc 127.0.0.1:50051 --service videogen.v1.JobService
    python -m services.probe http http://127.0.0.1:8080/health

Exit status 0 when the target is SERVING (gRPC) or answers 2xx (HTTP), 1 otherwise, with one
line on stderr saying why.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check_grpc(target: str, service: str, timeout: float) -> str | None:
    """None when target reports SERVING for service, else why not."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError as exc:
            return f"{target} {service or '(server)'}: {exc.code().name}: {exc.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{target} {service or '(server)'}: {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def check_http(url: str, timeout: float) -> str | None:
    """None when url answers 2xx, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except OSError as exc:
        return f"{url}: {exc}"
    return None if 200 <= status < 300 else f"{url}: HTTP {status}"


def main(argv: list[str] | None = None) -> None:
    """Parses the command line, checks once, exits 0 or 1."""
    parser = argparse.ArgumentParser(prog="python -m services.probe", description="One health check.")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    kinds = parser.add_subparsers(dest="kind", required=True)
    grpc_parser = kinds.add_parser("grpc", help="grpc.health.v1 Check")
    grpc_parser.add_argument("target", help="host:port")
    grpc_parser.add_argument("--service", default="", help='the health service name (default "": the server)')
    http_parser = kinds.add_parser("http", help="an HTTP GET that must answer 2xx")
    http_parser.add_argument("url")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.kind == "grpc":
        problem = check_grpc(args.target, args.service, args.timeout)
    else:
        problem = check_http(args.url, args.timeout)
    if problem is not None:
        sys.stderr.write(f"unhealthy: {problem}\n")
        raise SystemExit(1)


if __name__ == "__main__":
    main()
