"""The Envoy edge configuration: valid for Envoy itself, routing what the contract says, and
hardened as Envoy's edge best practices advise (checked on the file and on a running Envoy)."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from services.core.settings import load_settings
from services.edge import (
    TEMPLATE,
    EdgeSettings,
    EdgeTls,
    RateLimit,
    edge_manager,
    envoy_binary,
    envoy_command,
    render_local,
)
from services.jobs.settings import JobsSettings
from tests.support.certificates import ServerCertificate, make_server_certificate
from tests.support.deployment import ROOT
from tests.support.edge_upstreams import edge_in_front
from tests.support.processes import free_port
from videogen.v1 import jobs_pb2, jobs_pb2_grpc

REAL_SECRET_KEY = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f"
REAL_API_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
LOOPBACK_UPSTREAMS = {"gateway": [("127.0.0.1", 1)], "jobs": [("127.0.0.1", 1)], "providers": [("127.0.0.1", 1)]}
# The most requests a second that `make bench` has driven through the edge (docs/benchmarks.md,
# the faster machine of 2026-12-04: CreateJob over gRPC at c=64, 858/s; reads 853/s);
# `make chaos` creates far fewer.
BENCH_PEAK_PER_SECOND = 900


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
        upstreams={
            "gateway": [("127.0.0.1", 18080)],
            "jobs": [("127.0.0.1", 50151), ("127.0.0.1", 50251)],
            "providers": [("127.0.0.1", 50152)],
        },
        out=tmp_path / "envoy.yaml",
    )

    assert validate(out).returncode == 0


def test_the_edge_balances_over_every_replica_and_ejects_one_that_refuses(tmp_path: Path) -> None:
    replicas = [("127.0.0.1", 50151), ("127.0.0.1", 50251)]

    upstreams = {**LOOPBACK_UPSTREAMS, "jobs": replicas}

    out = render_local(edge_port=18000, admin_port=19901, metrics_port=19902, upstreams=upstreams, out=tmp_path / "a")

    clusters = {c["name"]: c for c in yaml.safe_load(out.read_text())["static_resources"]["clusters"]}
    (group,) = clusters["jobs"]["load_assignment"]["endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in group["lb_endpoints"]]
    assert [(a["address"], a["port_value"]) for a in addresses] == replicas
    for name in ("gateway", "jobs", "providers"):
        assert clusters[name]["lb_policy"] == "LEAST_REQUEST"
        assert clusters[name]["outlier_detection"]["consecutive_local_origin_failure"] == 2
        assert clusters[name]["health_checks"][0]["interval"] == "1s"


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
        upstreams={"gateway": [("127.0.0.1", 1)], "jobs": [("127.0.0.1", 1)], "providers": [("127.0.0.1", 1)]},
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


# --- Hardening: Envoy's "Configuring Envoy as an edge proxy" ----------------------------------


def template() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    return loaded


def listeners(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in config["static_resources"]["listeners"]}


def test_the_overload_manager_sheds_load_before_memory_runs_out() -> None:
    overload = template()["overload_manager"]
    monitors = {item["name"]: item["typed_config"] for item in overload["resource_monitors"]}
    actions = {item["name"]: item["triggers"][0] for item in overload["actions"]}

    assert monitors["envoy.resource_monitors.fixed_heap"]["max_heap_size_bytes"] > 0
    assert monitors["envoy.resource_monitors.global_downstream_max_connections"][
        "max_active_downstream_connections"] > 0  # fmt: skip
    shrink = actions["envoy.overload_actions.shrink_heap"]
    stop = actions["envoy.overload_actions.stop_accepting_requests"]
    assert shrink["name"] == stop["name"] == "envoy.resource_monitors.fixed_heap"
    assert shrink["threshold"]["value"] < stop["threshold"]["value"] < 1
    # Probes and Prometheus are never refused for want of a connection.
    assert listeners(template())["metrics"]["ignore_global_conn_limit"] is True


def test_the_edge_limits_buffers_headers_and_http2_streams() -> None:
    config = template()
    manager = edge_manager(config)

    assert listeners(config)["edge"]["per_connection_buffer_limit_bytes"] == 32768
    for cluster in config["static_resources"]["clusters"]:
        assert cluster["name"] == "envoy_admin" or cluster["per_connection_buffer_limit_bytes"] == 32768
    assert manager["use_remote_address"] is True
    assert manager["http2_protocol_options"] == {
        "max_concurrent_streams": 100,
        "initial_stream_window_size": 65536,
        "initial_connection_window_size": 1048576,
    }
    assert manager["common_http_protocol_options"]["headers_with_underscores_action"] == "REJECT_REQUEST"
    assert (manager["normalize_path"], manager["merge_slashes"]) == (True, True)
    assert manager["path_with_escaped_slashes_action"] == "REJECT_REQUEST"


def seconds(duration: str) -> float:
    return float(duration.removesuffix("s"))


def test_every_connection_and_stream_has_a_deadline_and_live_streams_outlast_their_keep_alives() -> None:
    manager = edge_manager(template())
    # Routes that forward (Envoy's own answers, such as UNIMPLEMENTED for internal gRPC, need none).
    routes = [r for r in manager["route_config"]["virtual_hosts"][0]["routes"] if "route" in r]
    live = [r["route"] for r in routes if r["route"]["timeout"] == "0s"]
    keepalive = JobsSettings.model_fields["jobs_watch_keepalive_seconds"].default

    assert 0 < seconds(manager["request_headers_timeout"]) <= 10
    assert seconds(manager["common_http_protocol_options"]["idle_timeout"]) > 0
    # The stream idle timeout lets the slowest route answer; live streams have their own.
    assert seconds(manager["stream_idle_timeout"]) > max(seconds(r["route"]["timeout"]) for r in routes)
    assert len(live) == 3  # WatchJob, and the events of one job and of several (SSE)
    assert all(4 * keepalive <= seconds(route["idle_timeout"]) for route in live)


def test_the_rate_limit_of_the_template_is_make_runs_default_and_leaves_bench_room() -> None:
    limiter = next(f for f in edge_manager(template())["http_filters"] if f["name"].endswith("local_ratelimit"))
    bucket = limiter["typed_config"]["token_bucket"]
    default = EdgeSettings.model_construct().rate_limit

    assert (bucket["tokens_per_fill"], bucket["max_tokens"], bucket["fill_interval"]) == (
        default.per_second,
        default.burst,
        "1s",
    )
    assert default.per_second >= 2 * BENCH_PEAK_PER_SECOND
    assert limiter["typed_config"]["rate_limited_as_resource_exhausted"] is True


def test_make_run_renders_the_rate_limit_or_none(tmp_path: Path) -> None:
    limited = edge_manager(yaml.safe_load(render(tmp_path / "a.yaml", rate_limit=RateLimit(5, 9)).read_text()))
    unlimited = edge_manager(yaml.safe_load(render(tmp_path / "b.yaml", rate_limit=RateLimit(0, 1)).read_text()))

    bucket = next(f for f in limited["http_filters"] if f["name"].endswith("local_ratelimit"))["typed_config"]
    assert bucket["token_bucket"] == {"max_tokens": 9, "tokens_per_fill": 5, "fill_interval": "1s"}
    assert [f["name"] for f in unlimited["http_filters"]] == ["envoy.filters.http.router"]
    assert validate(tmp_path / "a.yaml").returncode == 0
    assert validate(tmp_path / "b.yaml").returncode == 0


def test_a_burst_below_the_rate_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EDGE_RATE_LIMIT_PER_SECOND", "100")
    monkeypatch.setenv("EDGE_RATE_LIMIT_BURST", "10")

    with pytest.raises(SystemExit):
        load_settings(EdgeSettings)

    assert "EDGE_RATE_LIMIT_BURST must be at least EDGE_RATE_LIMIT_PER_SECOND" in capsys.readouterr().err


def raw_get(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    """The status of a GET sent as written (httpx would normalise the path itself)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_edge_routes_one_normalised_path_and_refuses_confusing_ones(tmp_path: Path) -> None:
    with edge_in_front(tmp_path) as edge:
        normalised = raw_get(edge.port, "/media/..//api/v1//jobs")
        escaped_slash = raw_get(edge.port, "/api/v1/jobs%2F..%2Fwebhooks")
        underscore = raw_get(edge.port, "/api/v1/jobs", {"X_Api_Key": "guess"})

    assert normalised == 200 and edge.gateway_paths[-1] == "/api/v1/jobs"
    assert (escaped_slash, underscore) == (400, 400)
    assert edge.gateway_paths == ["/api/v1/jobs"]


def test_past_the_rate_limit_the_edge_answers_429_with_retry_after(tmp_path: Path) -> None:
    with edge_in_front(tmp_path, rate_limit=RateLimit(per_second=1, burst=3)) as edge:
        with httpx.Client(base_url=f"http://127.0.0.1:{edge.port}", timeout=10) as client:
            answers = [client.get("/health") for _ in range(6)]
        with grpc.insecure_channel(f"127.0.0.1:{edge.port}") as channel, pytest.raises(grpc.RpcError) as refused:
            jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(id="j1"), timeout=10)

    statuses = [answer.status_code for answer in answers]
    assert statuses[:3] == [200, 200, 200] and statuses[-1] == 429, statuses
    assert answers[-1].headers["retry-after"] == "1"
    # JSON, as every error of the API (documented as a 429 of every route).
    assert answers[-1].headers["content-type"] == "application/json"
    assert "rate limit" in answers[-1].json()["detail"]
    assert len(edge.gateway_paths) == statuses.count(200)
    # RESOURCE_EXHAUSTED, not UNAVAILABLE: a client must not retry at once.
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> ServerCertificate:
    return make_server_certificate(tmp_path / "pki")


def negotiated(port: int, context: ssl.SSLContext, alpn: list[str]) -> tuple[str | None, str | None]:
    """The application protocol and TLS version a handshake offering alpn settles on."""
    context.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.selected_alpn_protocol(), tls.version()


def test_with_a_certificate_the_edge_speaks_tls_alone_verified_by_its_ca(
    tmp_path: Path, certificate: ServerCertificate
) -> None:
    trusted = ssl.create_default_context(cafile=str(certificate.ca_file))
    with edge_in_front(tmp_path, tls=EdgeTls(certificate.cert_file, certificate.key_file)) as edge:
        verified = httpx.get(f"https://127.0.0.1:{edge.port}/api/v1/jobs", verify=trusted, timeout=10)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{edge.port}/health", verify=ssl.create_default_context(), timeout=10)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{edge.port}/health", timeout=10)
        protocols = [negotiated(edge.port, trusted, alpn) for alpn in (["h2", "http/1.1"], ["http/1.1"])]

    assert verified.status_code == 200 and verified.json() == {"path": "/api/v1/jobs"}
    assert [alpn for alpn, _ in protocols] == ["h2", "http/1.1"]
    assert {version for _, version in protocols} <= {"TLSv1.2", "TLSv1.3"}
    assert edge.gateway_paths == ["/api/v1/jobs"]


def test_grpc_over_tls_reaches_the_services_through_the_edge(tmp_path: Path, certificate: ServerCertificate) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate.ca_file.read_bytes())
    with (
        edge_in_front(tmp_path, tls=EdgeTls(certificate.cert_file, certificate.key_file)) as edge,
        grpc.secure_channel(f"127.0.0.1:{edge.port}", credentials) as channel,
    ):
        job = jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(id="over-tls"), timeout=10)

    assert job.id == "over-tls"


def test_the_tls_configuration_validates_and_asks_tls_1_2_or_newer(
    tmp_path: Path, certificate: ServerCertificate
) -> None:
    rendered = yaml.safe_load(
        render(tmp_path / "envoy.yaml", tls=EdgeTls(certificate.cert_file, certificate.key_file)).read_text()
    )
    context = listeners(rendered)["edge"]["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]

    assert context["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"
    assert validate(tmp_path / "envoy.yaml").returncode == 0


@pytest.mark.parametrize(
    ("variables", "complaint"),
    [
        ({"EDGE_TLS_CERT_FILE": "{cert}"}, "EDGE_TLS_CERT_FILE and EDGE_TLS_KEY_FILE must be set together"),
        ({"EDGE_TLS_KEY_FILE": "{key}"}, "EDGE_TLS_CERT_FILE and EDGE_TLS_KEY_FILE must be set together"),
        ({"EDGE_TLS_CERT_FILE": "/nowhere/cert.pem", "EDGE_TLS_KEY_FILE": "{key}"}, "EDGE_TLS_CERT_FILE: no such file"),
        ({"EDGE_TLS_CERT_FILE": "{key}", "EDGE_TLS_KEY_FILE": "{key}"}, "EDGE_TLS_CERT_FILE: {key} holds no PEM cert"),
        (
            {"EDGE_TLS_CERT_FILE": "{cert}", "EDGE_TLS_KEY_FILE": "{cert}"},
            "EDGE_TLS_KEY_FILE: {cert} holds no PEM priv",
        ),
    ],
)
def test_tls_needs_both_files_and_each_must_hold_its_pem(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    certificate: ServerCertificate,
    variables: dict[str, str],
    complaint: str,
) -> None:
    files = {"cert": certificate.cert_file, "key": certificate.key_file}
    for name, value in variables.items():
        monkeypatch.setenv(name, value.format(**files))

    with pytest.raises(SystemExit):
        load_settings(EdgeSettings)

    assert complaint.format(**files) in capsys.readouterr().err


def test_tls_settings_name_the_edge_certificate(
    monkeypatch: pytest.MonkeyPatch, certificate: ServerCertificate
) -> None:
    monkeypatch.setenv("EDGE_TLS_CERT_FILE", str(certificate.cert_file))
    monkeypatch.setenv("EDGE_TLS_KEY_FILE", str(certificate.key_file))

    assert load_settings(EdgeSettings).tls == EdgeTls(certificate.cert_file, certificate.key_file)


def served_certificate(port: int) -> bytes:
    """The DER of the certificate the edge presents (unverified: the test compares it)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(certificate: ServerCertificate) -> bytes:
    return ssl.PEM_cert_to_DER_cert(certificate.cert_file.read_text())


def wait_for_certificate(port: int, expected: bytes, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while served_certificate(port) != expected:
        assert time.monotonic() < deadline, "the edge still presents the old certificate"
        time.sleep(0.2)


def kubelet_secret_volume(directory: Path, certificate: ServerCertificate, version: str) -> None:
    """Puts certificate into directory as the kubelet updates a Secret volume: the files in a new
    timestamped directory, then the `..data` link moved over to it in one rename."""
    (directory / version).mkdir(parents=True)
    for name, source in (("tls.crt", certificate.cert_file), ("tls.key", certificate.key_file)):
        (directory / version / name).write_bytes(source.read_bytes())
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    (directory / "..data_tmp").symlink_to(version)
    os.replace(directory / "..data_tmp", directory / "..data")


def test_the_kubernetes_tls_edge_serves_a_renewed_certificate_without_a_restart(tmp_path: Path) -> None:
    first, renewed = make_server_certificate(tmp_path / "first"), make_server_certificate(tmp_path / "renewed")
    component = ROOT / "k8s" / "components" / "edge-tls"
    config_dir, certificate_dir = tmp_path / "etc-envoy", tmp_path / "etc-envoy-tls"
    config_dir.mkdir()
    for name in ("envoy.yaml", "edge-tls-sds.yaml"):
        text = (component / name).read_text().replace("/etc/envoy-tls", str(certificate_dir))
        (config_dir / name).write_text(text.replace("/etc/envoy/", f"{config_dir}/"))
    kubelet_secret_volume(certificate_dir, first, "..2026_01_01")

    with edge_in_front(tmp_path, template=config_dir / "envoy.yaml") as edge:
        assert served_certificate(edge.port) == der(first)
        kubelet_secret_volume(certificate_dir, renewed, "..2026_03_01")
        wait_for_certificate(edge.port, der(renewed))


def test_make_runs_tls_edge_serves_a_certificate_moved_into_place_without_a_restart(tmp_path: Path) -> None:
    first, renewed = make_server_certificate(tmp_path / "first"), make_server_certificate(tmp_path / "renewed")
    live = tmp_path / "live"
    live.mkdir()
    current = EdgeTls(live / "edge.crt", live / "edge.key")
    for source, target in ((first.cert_file, current.cert_file), (first.key_file, current.key_file)):
        target.write_bytes(source.read_bytes())

    with edge_in_front(tmp_path, tls=current) as edge:
        assert served_certificate(edge.port) == der(first)
        # As certbot and most tools renew: new files renamed over the old ones.
        for source, target in ((renewed.key_file, current.key_file), (renewed.cert_file, current.cert_file)):
            target.with_suffix(".new").write_bytes(source.read_bytes())
            os.replace(target.with_suffix(".new"), target)
        wait_for_certificate(edge.port, der(renewed))
