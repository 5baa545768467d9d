"""The Envoy edge configuration: valid for Envoy itself, and routing what the contract says."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.core.settings import load_settings
from services.edge import TEMPLATE, EdgeSettings, envoy_binary, envoy_command, render_local
from tests.support.processes import free_port

REAL_SECRET_KEY = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f"
REAL_API_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
LOOPBACK_UPSTREAMS = {"gateway": ("127.0.0.1", 1), "jobs": ("127.0.0.1", 1), "providers": ("127.0.0.1", 1)}


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
    by_prefix = {r["match"].get("prefix") or r["match"].get("path"): r["route"]["cluster"] for r in routes}
    assert by_prefix["/videogen.v1.JobService/"] == "jobs"
    assert by_prefix["/videogen.v1.ProviderService/"] == "providers"
    assert by_prefix["/"] == "gateway"
    assert "unavailable" in next(r for r in routes if r["match"].get("path") == "/videogen.v1.JobService/GetJob")[
        "route"]["retry_policy"]["retry_on"]  # fmt: skip
    for name, service in (("jobs", "videogen.v1.JobService"), ("providers", "videogen.v1.ProviderService")):
        assert clusters[name]["health_checks"][0]["grpc_health_check"]["service_name"] == service


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


def render(out: Path, **options: Any) -> Path:
    """render_local on fixed ports with unreachable upstreams, plus options."""
    return render_local(
        edge_port=18000, admin_port=19901, metrics_port=19902, upstreams=LOOPBACK_UPSTREAMS, out=out, **options
    )


def listener_addresses(config: Path) -> dict[str, str]:
    """The address of each listener, and of the admin interface, in a rendered configuration."""
    loaded = yaml.safe_load(config.read_text())
    listeners = [*loaded["static_resources"]["listeners"], {"name": "admin", **loaded["admin"]}]
    return {item["name"]: item["address"]["socket_address"]["address"] for item in listeners}


def test_make_run_binds_the_edge_where_told_and_keeps_metrics_and_admin_on_loopback(tmp_path: Path) -> None:
    default = render(tmp_path / "default.yaml")
    everywhere = render(tmp_path / "everywhere.yaml", bind_host="0.0.0.0")

    assert listener_addresses(default) == {"edge": "127.0.0.1", "metrics": "127.0.0.1", "admin": "127.0.0.1"}
    assert listener_addresses(everywhere) == {"edge": "0.0.0.0", "metrics": "127.0.0.1", "admin": "127.0.0.1"}


@pytest.mark.parametrize(("app_env", "expected"), [("development", "127.0.0.1"), ("production", "0.0.0.0")])
def test_the_edge_listens_on_loopback_unless_in_production(
    monkeypatch: pytest.MonkeyPatch, app_env: str, expected: str
) -> None:
    monkeypatch.delenv("EDGE_BIND_HOST", raising=False)
    monkeypatch.setenv("APP_ENV", app_env)
    monkeypatch.setenv("SECRET_KEY", REAL_SECRET_KEY)
    monkeypatch.setenv("API_KEY", REAL_API_KEY)

    assert EdgeSettings(_env_file=None).edge_host == expected


def test_edge_bind_host_wins_and_must_be_an_ip_address(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDGE_BIND_HOST", "192.0.2.7")
    assert EdgeSettings(_env_file=None).edge_host == "192.0.2.7"

    monkeypatch.setenv("EDGE_BIND_HOST", "edge.example.com")
    with pytest.raises(SystemExit) as stopped:
        load_settings(EdgeSettings)

    assert stopped.value.code == 2
    assert "EDGE_BIND_HOST: must be an IP address" in capsys.readouterr().err
