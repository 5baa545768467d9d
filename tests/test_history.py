"""Commit subjects stay within 72 characters (the detail goes in the body), from the commit that
set the rule on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The last commit before issue 17, which set the rule: the history after it is held to it.
SINCE = "09b677e"
MAX_SUBJECT = 72


def subjects(since: str) -> list[str]:
    out = subprocess.run(
        ["git", "log", "--format=%s", f"{since}..HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_commit_subjects_are_short() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    known = subprocess.run(["git", "cat-file", "-e", f"{SINCE}^{{commit}}"], cwd=ROOT, capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"a shallow clone without {SINCE}")
    long = [subject for subject in subjects(SINCE) if len(subject) > MAX_SUBJECT]
    assert long == [], f"subjects over {MAX_SUBJECT} characters: {long}"
