"""The Envoy edge configuration: valid for Envoy itself, and routing what the contract says."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from services.edge import TEMPLATE, envoy_binary, render_local


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
    assert ports == {"gateway": 8080, "jobs": 50051, "providers": 50052}
    by_prefix = {r["match"].get("prefix") or r["match"].get("path"): r["route"]["cluster"] for r in routes}
    assert by_prefix["/videogen.v1.JobService/"] == "jobs"
    assert by_prefix["/videogen.v1.ProviderService/"] == "providers"
    assert by_prefix["/"] == "gateway"
    assert "unavailable" in next(r for r in routes if r["match"].get("path") == "/videogen.v1.JobService/GetJob")[
        "route"]["retry_policy"]["retry_on"]  # fmt: skip
    for name, service in (("jobs", "videogen.v1.JobService"), ("providers", "videogen.v1.ProviderService")):
        assert clusters[name]["health_checks"][0]["grpc_health_check"]["service_name"] == service
