"""Issue 19's targets, each decided from the run's named figures (bench/figures.py's flat) and
shown with its ratio to the baseline it stands beside, or to the target where it has none."""

from __future__ import annotations

import math
from dataclasses import dataclass

BIG_LIST_PREFIX = "list over 1M jobs, "


@dataclass(frozen=True)
class Target:
    """One target: a named figure against a limit."""

    name: str
    figure: str
    limit: float
    unit: str
    # True: the figure must stay under the limit; False: reach it.
    below: bool
    # Whether equal to the limit still meets it (<= or >=, else < or >).
    inclusive: bool
    # The figure of the baseline the ratio is taken against, and its short name; none: the limit.
    baseline: str = ""
    baseline_name: str = ""


@dataclass(frozen=True)
class Verdict:
    """A target as measured in one run."""

    name: str
    value: float
    limit: float
    unit: str
    met: bool
    ratio: float
    ratio_of: str

    def shown(self) -> str:
        """The measured value with its unit, or "not measured"."""
        if math.isnan(self.value):
            return "not measured"
        return f"{self.value:.2f}{self.unit}" if self.unit.startswith("x") else f"{self.value:.1f} {self.unit}"

    def line(self) -> str:
        """The target, its figure, its ratio and MET or NOT MET."""
        ratio = f"  ({self.ratio:.2f}x {self.ratio_of})" if math.isfinite(self.ratio) and self.ratio_of else ""
        return f"  {self.name}: {self.shown()}{ratio}  {'MET' if self.met else 'NOT MET'}"


FIXED = (
    Target("create c=64 >= 0.6x (b)", "create c=64 x (b)", 0.6, "x (b)", below=False, inclusive=True),
    Target(
        "CPU per create over our processes, c=64, <= 1.2 ms",
        "create c=64 CPU ms/request",
        1.2,
        "ms",
        below=True,
        inclusive=True,
        baseline="baseline (b) CPU ms/request",
        baseline_name="(b)",
    ),
    Target("GET /jobs/{id} p99 at c=1 < 8 ms", "get /jobs/{id} c=1 p99 ms", 8.0, "ms", below=True, inclusive=False),
    Target("list p99 at c=1 < 10 ms", "list ?userId=&status= c=1 p99 ms", 10.0, "ms", below=True, inclusive=False),
)
DISPATCH = (
    Target(
        "dispatch, worker idle, p50 < 5 ms",
        "dispatch idle p50 ms",
        5.0,
        "ms",
        below=True,
        inclusive=False,
        baseline="baseline (c) p50 ms",
        baseline_name="(c)",
    ),
    Target(
        "dispatch, worker idle, p99 < 25 ms",
        "dispatch idle p99 ms",
        25.0,
        "ms",
        below=True,
        inclusive=False,
        baseline="baseline (c) p99 ms",
        baseline_name="(c)",
    ),
    Target(
        "a job's whole-life CPU in our processes, rendering excluded, <= 12 ms",
        "job CPU less rendering ms",
        12.0,
        "ms",
        below=True,
        inclusive=True,
    ),
    Target("worker RPCs per job <= 3", "worker RPCs per job", 3.0, "RPCs", below=True, inclusive=True),
    Target(
        "largest Celery child < 120 MB PSS", "celery child PSS MB, largest", 120.0, "MB", below=True, inclusive=False
    ),
)


def big_list_targets(figures: dict[str, float]) -> list[Target]:
    """Every page of the lists over a million jobs: p99 < 12 ms."""
    pages = [name for name in figures if name.startswith(BIG_LIST_PREFIX) and name.endswith(" p99 ms")]
    return [
        Target(f"{page.removesuffix(' ms')} < 12 ms", page, 12.0, "ms", below=True, inclusive=False) for page in pages
    ]


def memory_targets(figures: dict[str, float]) -> list[Target]:
    """Every service but the worker under 150 MB RSS."""
    services = [name for name in figures if name.endswith(" RSS MB") and not name.startswith("worker")]
    return [
        Target(f"{name.removesuffix(' RSS MB')} < 150 MB RSS", name, 150.0, "MB", below=True, inclusive=False)
        for name in services
    ]


def with_ratios(figures: dict[str, float]) -> dict[str, float]:
    """figures plus the ratio a target reads: creation at c=64 over baseline (b)'s throughput."""
    baseline = figures.get("baseline (b) create c=64 req/s", math.nan)
    create = figures.get("create c=64 req/s", math.nan)
    ratio = create / baseline if baseline and math.isfinite(baseline) else math.nan
    return {**figures, "create c=64 x (b)": ratio}


def decide(target: Target, figures: dict[str, float]) -> Verdict:
    """One target against the figures; a figure not measured does not meet it."""
    value = figures.get(target.figure, math.nan)
    if math.isnan(value):
        met = False
    elif target.below:
        met = value <= target.limit if target.inclusive else value < target.limit
    else:
        met = value >= target.limit if target.inclusive else value > target.limit
    against = figures.get(target.baseline, math.nan) if target.baseline else target.limit
    ratio = value / against if against and math.isfinite(against) else math.nan
    ratio_of = target.baseline_name or "the target"
    if target.unit.startswith("x"):
        ratio, ratio_of = math.nan, ""
    return Verdict(target.name, value, target.limit, target.unit, met, ratio, ratio_of)


def verdicts(figures: dict[str, float]) -> list[Verdict]:
    """Every target of issue 19 as measured by these figures."""
    everything = with_ratios(figures)
    targets = [*FIXED, *big_list_targets(figures), *DISPATCH, *memory_targets(figures)]
    return [decide(target, everything) for target in targets]
