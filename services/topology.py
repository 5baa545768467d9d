"""The processes of the system, their ports and how each is checked and scraped: one table.

`make run`, the Prometheus targets of a local run, and the tests that hold deploy/ and k8s/
to the contract all read it, so that a port is written down once. The ports themselves are
settings (contract.md: every one overridable); this table names which setting is which.

`python -m services.topology file-sd` prints Prometheus file-based service discovery for the
processes of `make run` on this machine, every replica of RUN_REPLICAS included.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import field_validator, model_validator

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
# Replica k (from 0) of a process listens on each of its ports plus k times this step.
REPLICA_PORT_STEP = 100
# What `make run` may start more than once (RUN_REPLICAS), and why the others are one each.
REPLICABLE = ("jobs", "providers", "worker")
SINGLE = {
    "envoy": "it is the one edge listener on EDGE_PORT",
    "gateway": "the edge's gateway cluster and /health checks name its one API_PORT",
}


@dataclass(frozen=True)
class Replica:
    """One of the processes `make run` starts: a process of the table and its index (from 0)."""

    process: Process
    index: int = 0

    @property
    def name(self) -> str:
        """jobs, jobs-2, jobs-3, ...: the first keeps the process's own name."""
        return self.process.name if self.index == 0 else f"{self.process.name}-{self.index + 1}"

    def port(self, settings: CoreSettings) -> int:
        """Its serving port."""
        return self.process.port(settings) + self.index * REPLICA_PORT_STEP

    def metrics_port(self, settings: CoreSettings) -> int:
        """The port Prometheus scrapes."""
        return self.process.metrics_port(settings) + self.index * REPLICA_PORT_STEP

    def health_port(self, settings: CoreSettings) -> int:
        """The port its health check asks."""
        return self.process.health_port(settings) + self.index * REPLICA_PORT_STEP

    def port_env(self, settings: CoreSettings) -> dict[str, str]:
        """Its port variables (JOBS_GRPC_PORT, ...), for its own environment."""
        names = {self.process.port_setting, self.process.metrics_port_setting, self.process.health_port_setting}
        step = self.index * REPLICA_PORT_STEP
        return {name.upper(): str(int(getattr(settings, name)) + step) for name in sorted(names) if name}


def parse_replicas(text: str) -> dict[str, int]:
    """RUN_REPLICAS (`jobs=2,worker=3`) as counts by process; ValueError saying what is wrong."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, number = (part.strip() for part in item.partition("="))
        if name in SINGLE:
            raise ValueError(f"{name} cannot be replicated: {SINGLE[name]}; replicable: {', '.join(REPLICABLE)}")
        if name not in REPLICABLE or not sep:
            raise ValueError(f"expected NAME=COUNT with NAME one of {', '.join(REPLICABLE)}, got {item!r}")
        if not number.isdigit() or not 1 <= int(number) <= 9 or name in counts:
            raise ValueError(f"{name} needs one count from 1 to 9, got {item!r}")
        counts[name] = int(number)
    return counts


def replicas(counts: Mapping[str, int]) -> list[Replica]:
    """Every process to start, in start-up order, each as many times as counts says (else once)."""
    return [Replica(process, index) for process in PROCESSES for index in range(counts.get(process.name, 1))]


def replica_ports_clash(settings: CoreSettings, counts: Mapping[str, int]) -> str | None:
    """Why the replicas' ports cannot all be used (out of range, or one port twice), or None."""
    used: dict[int, str] = {settings.envoy_admin_port: "envoy admin"}
    for replica in replicas(counts):
        for port in {replica.port(settings), replica.metrics_port(settings), replica.health_port(settings)}:
            if port > 65535:
                return f"{replica.name} would listen on port {port}, above 65535"
            if used.get(port, replica.name) != replica.name:
                return f"{replica.name} and {used[port]} would both listen on port {port}"
            used[port] = replica.name
    return None


class ReplicaSettings(CoreSettings):
    """CoreSettings plus RUN_REPLICAS, which `make run` and its Prometheus targets read."""

    # How many of jobs, providers and worker `make run` starts (`jobs=2,worker=2`); unnamed: one.
    run_replicas: str = ""

    @field_validator("run_replicas")
    @classmethod
    def _replicas(cls, value: str) -> str:
        parse_replicas(value)
        return value

    @model_validator(mode="after")
    def _replica_ports_free(self) -> ReplicaSettings:
        clash = replica_ports_clash(self, self.replica_counts) if self.replica_counts else None
        if clash is not None:
            raise ValueError(f"RUN_REPLICAS: {clash} (replica k listens on each port + {REPLICA_PORT_STEP}*k)")
        return self

    @property
    def replica_counts(self) -> dict[str, int]:
        """RUN_REPLICAS by process name."""
        return parse_replicas(self.run_replicas)


def file_sd(
    settings: CoreSettings, host: str = "127.0.0.1", counts: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """Prometheus file-based service discovery for every process, one target group each, listing
    every replica of it."""
    started = replicas(counts or {})
    return [
        {
            "targets": [f"{host}:{r.metrics_port(settings)}" for r in started if r.process == process],
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
    settings = load_settings(ReplicaSettings)
    json.dump(file_sd(settings, args.host, settings.replica_counts), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
