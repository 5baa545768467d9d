"""The processes of the system, their ports and how each is checked and scraped: one table.

`make run`, the Prometheus targets of a local run, and the tests that hold deploy/ and k8s/
to the contract all read it, so that a port is written down once. The ports themselves are
settings (contract.md: every one overridable); this table names which setting is which.

`python -m services.topology file-sd` prints Prometheus file-based service discovery for the
processes of `make run` on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any, Literal

from services.core.settings import CoreSettings, load_settings


def _default(setting: str) -> int:
    """The default of a port setting."""
    return int(CoreSettings.model_fields[setting].default)


@dataclass(frozen=True)
class Process:
    """One process of contract.md's table."""

    # The compose service, the Kubernetes Deployment and Service, and the Prometheus job.
    name: str
    # `python -m <module>` starts it; None for Envoy, which is its own binary.
    module: str | None
    protocol: Literal["grpc", "http"]
    # The CoreSettings fields of its serving port and of the port Prometheus scrapes.
    port_setting: str
    metrics_port_setting: str
    metrics_path: str = "/metrics"
    # The grpc.health.v1 name that readiness asks (gRPC processes only).
    health_service: str = ""
    # The HTTP path that says the process is up, and the setting of its port when that is not
    # the serving port (HTTP processes only).
    health_path: str = ""
    health_port_setting: str = ""

    def port(self, settings: CoreSettings) -> int:
        """Its serving port under these settings."""
        return int(getattr(settings, self.port_setting))

    def health_port(self, settings: CoreSettings) -> int:
        """The port its health check asks under these settings."""
        return int(getattr(settings, self.health_port_setting or self.port_setting))

    def metrics_port(self, settings: CoreSettings) -> int:
        """The port Prometheus scrapes under these settings."""
        return int(getattr(settings, self.metrics_port_setting))

    @property
    def default_port(self) -> int:
        """Its serving port by default (contract.md)."""
        return _default(self.port_setting)

    @property
    def default_health_port(self) -> int:
        """The port its health check asks by default."""
        return _default(self.health_port_setting or self.port_setting)

    @property
    def default_metrics_port(self) -> int:
        """Its metrics port by default (contract.md)."""
        return _default(self.metrics_port_setting)


ENVOY = Process(
    "envoy",
    None,
    "http",
    "edge_port",
    "envoy_metrics_port",
    metrics_path="/stats/prometheus",
    health_path="/ready",
    health_port_setting="envoy_metrics_port",
)
GATEWAY = Process("gateway", "services.gateway", "http", "api_port", "api_port", health_path="/health")
JOBS = Process(
    "jobs", "services.jobs", "grpc", "jobs_grpc_port", "jobs_metrics_port", health_service="videogen.v1.JobService"
)
PROVIDERS = Process(
    "providers",
    "services.providers",
    "grpc",
    "providers_grpc_port",
    "providers_metrics_port",
    health_service="videogen.v1.ProviderService",
)
WORKER = Process(
    "worker",
    "services.worker",
    "grpc",
    "worker_grpc_port",
    "worker_metrics_port",
    health_service="videogen.v1.WorkerService",
)
# In start-up order: each one's dependencies come before it.
PROCESSES: tuple[Process, ...] = (JOBS, PROVIDERS, WORKER, GATEWAY, ENVOY)
BY_NAME = {process.name: process for process in PROCESSES}
# Every port setting of the system, Envoy's loopback admin included.
PORT_SETTINGS: tuple[str, ...] = (
    *dict.fromkeys(
        setting
        for process in PROCESSES
        for setting in (process.port_setting, process.metrics_port_setting, process.health_port_setting)
        if setting
    ),
    "envoy_admin_port",
)


def file_sd(settings: CoreSettings, host: str = "127.0.0.1") -> list[dict[str, Any]]:
    """Prometheus file-based service discovery for every process, one target group each."""
    return [
        {
            "targets": [f"{host}:{process.metrics_port(settings)}"],
            "labels": {"job": process.name, "__metrics_path__": process.metrics_path},
        }
        for process in PROCESSES
    ]


def main(argv: list[str] | None = None) -> None:
    """The command line: `file-sd` prints the targets of this machine's processes as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["file-sd"])
    parser.add_argument("--host", default="127.0.0.1", help="the address the processes are reached at")
    args = parser.parse_args(argv)
    settings = load_settings(CoreSettings)
    json.dump(file_sd(settings, args.host), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
