"""docs/contract.md: the contract the code and the tests cite, kept in the repository.

The planning repository beside a checkout (../shared/spec/contract.md) holds the original; the
copy here must equal it whenever it is there, and must hold the sections the code cites always.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = ROOT / "docs" / "contract.md"
# The original, beside the checkout; absent in a bare clone.
PLANNING_CONTRACT = ROOT.parent / "shared" / "spec" / "contract.md"
# The headings that code, tests and docs cite ("contract.md, Metrics", the port table, ...).
CITED_SECTIONS = (
    "Processes and default ports",
    "REST through the edge",
    "gRPC",
    "Metrics",
    "Queues, retries and limits",
    "Configuration",
)


def sections(text: str) -> list[str]:
    """The second-level headings of a Markdown page."""
    return re.findall(r"^## (.+)$", text, re.MULTILINE)


def missing_sections(text: str) -> list[str]:
    """The cited sections a page lacks, by heading prefix (headings may carry a note after)."""
    headings = sections(text)
    return [cited for cited in CITED_SECTIONS if not any(heading.startswith(cited) for heading in headings)]


def test_the_contract_holds_every_cited_section() -> None:
    assert missing_sections(CONTRACT.read_text()) == []


def test_the_contract_has_the_port_table() -> None:
    text = CONTRACT.read_text()
    table = text.split("## Processes and default ports", 1)[1].split("\n## ", 1)[0]

    assert "| process |" in table
    assert re.search(r"^\| jobs service \|.*\| 50051, metrics 9101 \|$", table, re.MULTILINE)


def test_the_contract_is_the_planning_copy() -> None:
    if not PLANNING_CONTRACT.exists():
        pytest.skip("no ../shared/spec/contract.md beside this checkout (a bare clone)")

    assert CONTRACT.read_bytes() == PLANNING_CONTRACT.read_bytes(), (
        f"docs/contract.md differs from {PLANNING_CONTRACT}: copy it over (cp {PLANNING_CONTRACT} docs/contract.md)"
    )


def test_a_missing_section_is_caught() -> None:
    text = CONTRACT.read_text().replace("## Metrics", "## Measurements")

    assert missing_sections(text) == ["Metrics"]
