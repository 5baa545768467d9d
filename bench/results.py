"""A run's results as JSON (bench/results/latest.json, the run before kept as previous.json), and
the comparison of two runs' targets ("create c=64 >= 0.6x (b): 0.26x -> 0.61x")."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.targets import Verdict, verdicts

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
LATEST, PREVIOUS = "latest.json", "previous.json"
# The layout of the JSON; a file of another version is not compared with.
VERSION = 1


@dataclass
class Results:
    """One run: where and when it ran, every figure by name, and the targets as they stood."""

    commit: str
    date: str
    machine: dict[str, str]
    seconds: float
    figures: dict[str, float]
    targets: list[Verdict] = field(default_factory=list)

    @classmethod
    def of(cls, figures: dict[str, float], *, seconds: float) -> Results:
        """This run's results, on this machine and commit, now."""
        now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        return cls(current_commit(), now, machine(), seconds, figures, verdicts(figures))

    def to_json(self) -> str:
        """The results as JSON; an unmeasured figure (nan) is null."""
        data = asdict(self)
        data["version"] = VERSION
        data["figures"] = {name: _finite(value) for name, value in self.figures.items()}
        data["targets"] = [
            {**asdict(verdict), "value": _finite(verdict.value), "ratio": _finite(verdict.ratio)}
            for verdict in self.targets
        ]
        return json.dumps(data, indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Results:
        """Results written by to_json; ValueError for another layout."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError(f"not bench results of version {VERSION}")
        targets = [
            Verdict(**{**item, "value": _number(item["value"]), "ratio": _number(item["ratio"])})
            for item in data["targets"]
        ]
        figures = {str(name): _number(value) for name, value in data["figures"].items()}
        return cls(
            str(data["commit"]), str(data["date"]), dict(data["machine"]), float(data["seconds"]), figures, targets
        )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def save(results: Results, directory: Path = RESULTS_DIR) -> Results | None:
    """Writes latest.json, the one there before renamed previous.json; the previous results, if
    readable."""
    directory.mkdir(parents=True, exist_ok=True)
    latest, previous = directory / LATEST, directory / PREVIOUS
    before: Results | None = None
    if latest.exists():
        os.replace(latest, previous)
        try:
            before = Results.from_json(previous.read_text())
        except (ValueError, KeyError, TypeError):
            before = None
    latest.write_text(results.to_json())
    return before


def comparison(before: Results, now: Results) -> list[str]:
    """Each target of both runs: its figure then and now, and a verdict that changed."""
    then = {verdict.name: verdict for verdict in before.targets}
    lines = [f"against the run before ({before.commit}, {before.date}, {before.seconds:g} s levels):"]
    for verdict in now.targets:
        old = then.get(verdict.name)
        if old is None:
            lines.append(f"  {verdict.name}: new, {verdict.shown()}")
            continue
        change = ""
        if old.met != verdict.met:
            change = "  (now MET)" if verdict.met else "  (no longer MET)"
        lines.append(f"  {verdict.name}: {old.shown()} -> {verdict.shown()}{change}")
    return lines


def current_commit() -> str:
    """The checkout's commit, "+changes" when its files differ from it; "unknown" outside git."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def machine() -> dict[str, str]:
    """CPUs, CPU model, memory, kernel and Python of this machine."""
    model, memory = "unknown", "unknown"
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        memory = next(line.split(":", 1)[1].strip() for line in Path("/proc/meminfo").read_text().splitlines())
    except (OSError, StopIteration):
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
