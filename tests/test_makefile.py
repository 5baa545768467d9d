"""`make help` lists every target of the Makefile, and every target is .PHONY."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"


def targets(text: str) -> set[str]:
    """The named targets a Makefile defines (not variables, not file rules such as $(STAMP))."""
    return set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", text, re.MULTILINE))


def phony(text: str) -> set[str]:
    """The targets the .PHONY lines name."""
    return {name for line in re.findall(r"^\.PHONY:(.*)$", text, re.MULTILINE) for name in line.split()}


def listed(help_output: str) -> set[str]:
    """The targets `make help` prints, one `make NAME  what it does` a line."""
    return set(re.findall(r"^\s*make (\S+)", help_output, re.MULTILINE))


def test_make_help_lists_every_target_and_every_target_is_phony() -> None:
    text = MAKEFILE.read_text()
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)

    assert targets(text) >= {"help", "venv", "lock", "run", "test", "lint"}
    assert listed(result.stdout) == targets(text)
    assert phony(text) == targets(text)


def test_a_target_without_a_description_is_caught() -> None:
    text = MAKEFILE.read_text() + "\nundocumented:\n\t@true\n"

    assert "undocumented" in targets(text)
    assert "undocumented" not in phony(text)
