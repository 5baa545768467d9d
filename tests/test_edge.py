"""The Envoy edge configuration: valid for Envoy itself, and routing what the contract says."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import yaml

from services.edge import TEMPLATE, envoy_binary, envoy_command, render_local
from tests.support.processes import free_port


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(path)], capture_output=True, text=True, timeout=120
    )


def test_envoy_validates_the_edge_configuration() -> None:
    result = validate(TEMPLATE)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_envoy_validates_the_rendered_local_configuration(tmp_path: Path) -> None:
    out = render_local(
        edge_port=18000,
        admin_port=19901,
        metrics_port=19902,
        upstreams={"gateway": ("127.0.0.1", 18080), "jobs": ("127.0.0.1", 50151), "providers": ("127.0.0.1", 50152)},
        out=tmp_path / "envoy.yaml",
    )

    assert validate(out).returncode == 0


def test_a_broken_route_fails_validation(tmp_path: Path) -> None:
    broken = tmp_path / "envoy.yaml"
    broken.write_text(TEMPLATE.read_text().replace("cluster: providers, timeout", "cluster: nowhere, timeout"))

    assert validate(broken).returncode != 0


def test_the_edge_follows_the_contract() -> None:
    config = yaml.safe_load(TEMPLATE.read_text())
    listener = config["static_resources"]["listeners"][0]
    routes = listener["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}

    assert listener["address"]["socket_address"]["port_value"] == 8000
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}
    ports = {name: c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
             ["port_value"] for name, c in clusters.items()}  # fmt: skip
    assert ports == {"envoy_admin": 9901, "gateway": 8080, "jobs": 50051, "providers": 50052}
    routed = [r for r in routes if "route" in r]
    by_prefix = {r["match"].get("prefix") or r["match"].get("path"): r["route"]["cluster"] for r in routed}
    assert by_prefix["/videogen.v1.JobService/"] == "jobs"
    assert by_prefix["/videogen.v1.ProviderService/"] == "providers"
    assert by_prefix["/"] == "gateway"
    assert "unavailable" in next(r for r in routes if r["match"].get("path") == "/videogen.v1.JobService/GetJob")[
        "route"]["retry_policy"]["retry_on"]  # fmt: skip
    for name, service in (("jobs", "videogen.v1.JobService"), ("providers", "videogen.v1.ProviderService")):
        assert clusters[name]["health_checks"][0]["grpc_health_check"]["service_name"] == service
    # Reflection goes to the jobs service; every other gRPC path is answered UNIMPLEMENTED by Envoy.
    assert by_prefix["/grpc.reflection.v1alpha.ServerReflection/"] == "jobs"
    [refused] = [r for r in routes if "direct_response" in r]
    assert refused["match"] == {"prefix": "/", "grpc": {}}
    assert {"key": "grpc-status", "value": "12"} in [h["header"] for h in refused["response_headers_to_add"]]
    assert routes.index(refused) < routes.index(next(r for r in routed if r["match"].get("prefix") == "/"))


def test_the_metrics_listener_serves_prometheus_stats_and_readiness_and_nothing_else(tmp_path: Path) -> None:
    metrics_port = free_port()
    config = render_local(
        edge_port=free_port(),
        admin_port=free_port(),
        metrics_port=metrics_port,
        upstreams={"gateway": ("127.0.0.1", 1), "jobs": ("127.0.0.1", 1), "providers": ("127.0.0.1", 1)},
        out=tmp_path / "envoy.yaml",
    )
    envoy = subprocess.Popen(envoy_command(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{metrics_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"{base}/ready", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "envoy did not start"
                time.sleep(0.2)
        stats = httpx.get(f"{base}/stats/prometheus", timeout=5)
        # The rest of the admin interface (which can stop Envoy) stays on loopback only.
        quit_ = httpx.post(f"{base}/quitquitquit", timeout=5)
        clusters = httpx.get(f"{base}/clusters", timeout=5)
    finally:
        envoy.terminate()
        envoy.wait(10)

    assert (ready.status_code, ready.text.strip()) == (200, "LIVE")
    assert stats.status_code == 200
    assert "envoy_cluster_upstream_cx_total" in stats.text
    assert quit_.status_code == 404
    assert clusters.status_code == 404
