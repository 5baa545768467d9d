"""The port table of docs/contract.md, the settings' defaults and services/topology.py agree."""

from __future__ import annotations

import re
from pathlib import Path

from services.core.settings import CoreSettings
from services.topology import BY_NAME, PORT_SETTINGS, PROCESSES

ROOT = Path(__file__).resolve().parents[2]
# docs/contract.md, "Processes and default ports", as it stands; a change there is a breaking change.
CONTRACT: dict[str, dict[str, int]] = {
    "edge (Envoy)": {"port": 8000},
    "gateway (FastAPI)": {"port": 8080},
    "jobs service": {"port": 50051, "metrics": 9101},
    "providers service": {"port": 50052, "metrics": 9102},
    "worker service": {"port": 50053, "metrics": 9103},
    "Envoy admin": {"port": 9901},
}
# Its gRPC column: the service each port serves.
GRPC_SERVICES = {
    "jobs service": "videogen.v1.JobService",
    "providers service": "videogen.v1.ProviderService",
    "worker service": "videogen.v1.WorkerService",
}
PROCESS_OF_ROW = {
    "edge (Envoy)": "envoy",
    "gateway (FastAPI)": "gateway",
    "jobs service": "jobs",
    "providers service": "providers",
    "worker service": "worker",
}
# The contract's copy in this repository (tests/test_docs.py keeps it equal to the planning copy).
CONTRACT_FILE = ROOT / "docs" / "contract.md"


def parse_contract_table(text: str) -> dict[str, dict[str, int]]:
    """The rows of docs/contract.md's port table: process -> its default port (and metrics port)."""
    rows: dict[str, dict[str, int]] = {}
    section = text.split("## Processes and default ports", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not re.search(r"\d", cells[2]):
            continue
        ports = re.findall(r"\d{4,5}", cells[2])
        row = {"port": int(ports[0])}
        if "metrics" in cells[2]:
            row["metrics"] = int(ports[1])
        rows[cells[0]] = row
    return rows


def test_the_topology_serves_the_contract_ports() -> None:
    for row, expected in CONTRACT.items():
        if row == "Envoy admin":
            assert CoreSettings.model_fields["envoy_admin_port"].default == expected["port"]
            continue
        process = BY_NAME[PROCESS_OF_ROW[row]]
        assert process.default_port == expected["port"], row
        if "metrics" in expected:
            assert process.default_metrics_port == expected["metrics"], row
        if row in GRPC_SERVICES:
            assert process.protocol == "grpc" and process.health_service == GRPC_SERVICES[row], row


def test_the_quoted_table_is_the_contract_of_this_checkout() -> None:
    parsed = parse_contract_table(CONTRACT_FILE.read_text())

    assert parsed == CONTRACT


def test_the_parser_reads_a_changed_port() -> None:
    text = (
        "## Processes and default ports\n\n| process | what | default |\n|---|---|---|\n"
        "| jobs service | gRPC | 50061, metrics 9111 |\n\n## Next\n"
    )

    assert parse_contract_table(text) == {"jobs service": {"port": 50061, "metrics": 9111}}


def test_every_process_has_distinct_ports() -> None:
    defaults = [CoreSettings.model_fields[setting].default for setting in PORT_SETTINGS]
    serving = {process.default_port for process in PROCESSES}

    # The gateway serves its metrics on its own port; every other port is its process's own.
    assert len(set(defaults)) == len(defaults)
    assert len(serving) == len(PROCESSES)
