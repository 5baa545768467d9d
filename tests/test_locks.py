"""The hashed lock files: every package pinned with its hashes, and every requirement locked.

requirements*.txt say what the project asks for; `make lock` resolves each into a .lock file that
pins every package, transitive ones too, with the sha256 of each of its files. Installs read the
locks alone, with pip's --require-hashes: .venv (scripts/bootstrap.sh) and the image (deploy/Dockerfile).
"""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# Each lock and the requirements file it is compiled from.
LOCKS = {
    "requirements-dev.lock": "requirements-dev.txt",
    "requirements.lock": "requirements.txt",
    "requirements-protogen.lock": "requirements-protogen.txt",
}
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)(?P<hashes>(?: --hash=\S+)+)$")
_HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}$")


def lock_entries(text: str) -> list[str]:
    """The requirement entries of a lock, continuation lines joined, comments dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def entry_problems(entry: str) -> list[str]:
    """How one entry fails to be `name==version --hash=sha256:...`; empty when it is."""
    matched = _ENTRY.match(entry)
    if matched is None:
        return [f"not `name==version --hash=sha256:...`: {entry[:120]}"]
    return [f"{matched['name']}: bad hash {part}" for part in matched["hashes"].split() if not _HASH.match(part)]


def pins(lock: str) -> dict[str, str]:
    """Package -> version, as the lock pins it."""
    found: dict[str, str] = {}
    for entry in lock_entries((ROOT / lock).read_text()):
        requirement = Requirement(entry.split(" --hash=")[0])
        found[canonicalize_name(requirement.name)] = str(requirement.specifier).removeprefix("==")
    return found


def requirements(path: Path) -> list[Requirement]:
    """The requirements a file asks for, following -r includes (not -c constraints)."""
    found = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#") or line.startswith("-c "):
            continue
        if line.startswith("-r "):
            found.extend(requirements(path.parent / line.removeprefix("-r ").strip()))
        else:
            found.append(Requirement(line))
    return found


@pytest.mark.parametrize("lock", LOCKS)
def test_every_line_of_the_lock_pins_a_version_with_its_hashes(lock: str) -> None:
    entries = lock_entries((ROOT / lock).read_text())

    assert entries
    assert [problem for entry in entries for problem in entry_problems(entry)] == []


@pytest.mark.parametrize(("lock", "source"), LOCKS.items())
def test_every_requirement_is_in_its_lock_at_its_version(lock: str, source: str) -> None:
    locked = pins(lock)
    missing = []
    for requirement in requirements(ROOT / source):
        version = str(requirement.specifier).removeprefix("==")
        if locked.get(canonicalize_name(requirement.name)) != version:
            missing.append(f"{requirement} (locked: {locked.get(canonicalize_name(requirement.name))})")

    assert missing == [], f"{lock} is stale: run `make lock`"


def test_the_locks_agree_with_the_dev_lock() -> None:
    dev = pins("requirements-dev.lock")
    for lock in ("requirements.lock", "requirements-protogen.lock"):
        differing = {name: version for name, version in pins(lock).items() if dev.get(name) != version}

        assert differing == {}, f"{lock} pins what requirements-dev.lock pins otherwise"


def test_every_install_checks_the_hashes_of_a_lock() -> None:
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    dockerfile = re.sub(r"\\\n", " ", (ROOT / "deploy" / "Dockerfile").read_text())
    makefile = (ROOT / "Makefile").read_text()
    installs = [line for line in (bootstrap + dockerfile).splitlines() if "pip install" in line]

    assert installs
    for line in installs:
        assert re.search(r"--require-hashes -r \S+\.lock", line), line
    assert re.search(r"^\$\(STAMP\):.*requirements-dev\.lock", makefile, re.MULTILINE)


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("fastapi>=0.165 --hash=sha256:" + "0" * 64, "not `name==version"),
        ("fastapi==0.165.0", "not `name==version"),
        ("fastapi==0.165.0 --hash=md5:00", "bad hash"),
    ],
)
def test_an_unpinned_or_unhashed_entry_is_caught(entry: str, complaint: str) -> None:
    assert any(complaint in problem for problem in entry_problems(entry))


def bootstrap_output(*, terminal: bool) -> str:
    """What scripts/bootstrap.sh prints over this test run's own virtual environment (everything
    installed already, so pip checks and leaves it), on a terminal (a pty) or into a pipe."""
    command = ["bash", str(ROOT / "scripts" / "bootstrap.sh"), sys.executable, sys.prefix]
    if not terminal:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, check=True).stdout
    controller, tty = pty.openpty()
    process = subprocess.Popen(command, stdout=tty, stderr=tty, stdin=subprocess.DEVNULL)
    os.close(tty)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal's other end closed: the script ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    assert process.wait(300) == 0
    return b"".join(chunks).decode(errors="replace")


def test_bootstrap_shows_pip_at_work_on_a_terminal_and_stays_quiet_in_a_log() -> None:
    at_terminal, in_log = bootstrap_output(terminal=True), bootstrap_output(terminal=False)

    assert "Requirement already satisfied" in at_terminal  # one line a package: the first run's progress
    assert "bootstrap: ready" in at_terminal and "bootstrap: ready" in in_log
    assert "Requirement already satisfied" not in in_log
