"""What one bench run measured (Figures), and the same as named numbers (flat) for the targets,
the JSON results, the comparison with the run before and the chart."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.load import LevelResult
from bench.procs import LARGEST_CHILD
from bench.targets import BIG_LIST_PREFIX
from bench.timings import JobTimes

# The CPU of these processes is "ours": a label of the form "role [service]" (bench/__main__.py's
# watched_pids); PostgreSQL, Redis and the load generator are not.
OURS_SUFFIX = "]"
# Services held to the "< 150 MB RSS" target; the worker is held to its per-child PSS instead.
OTHER_SERVICES = ("jobs", "providers", "gateway", "envoy")
NAN = float("nan")


@dataclass
class Figures:
    """Everything one run measured."""

    pg_insert_rate: float = 0.0
    pg_connections: int = 0
    baseline: LevelResult | None = None
    # CPU of baseline (b)'s one process per create, ms.
    baseline_cpu_ms: float = NAN
    levels: list[LevelResult] = field(default_factory=list)
    memory_idle: dict[str, float] = field(default_factory=dict)
    memory_after: dict[str, float] = field(default_factory=dict)
    # % of one core by process during each level at c=64 ("create c=64", "create (gRPC) c=64", ...).
    cpu_by_level: dict[str, dict[str, float]] = field(default_factory=dict)
    grpc_create: LevelResult | None = None
    load_generator: str = ""
    paced: LevelResult | None = None
    paced_api: LevelResult | None = None
    handoff_ms: list[float] = field(default_factory=list)
    timings: list[JobTimes] = field(default_factory=list)
    cpu_per_job: dict[str, float] = field(default_factory=dict)
    # The worker's RPCs (JobLifecycleService and ProviderRoutingService) per finished job, by method.
    rpcs_per_job: dict[str, float] = field(default_factory=dict)
    # The built-in renderer's CPU for one of the bench's tiny videos, ms (measured in the bench).
    render_cpu_ms: float = NAN
    worker_concurrency: int = 0
    seed_seconds: float = 0.0
    big_lists: list[LevelResult] = field(default_factory=list)


def is_ours(label: str) -> bool:
    """Whether a CPU label names one of the system's own processes."""
    return label.endswith(OURS_SUFFIX)


def cpu_per_request_ms(cpu_percent: dict[str, float], throughput: float) -> float:
    """ms of CPU a request over our processes, from their % of a core at that throughput."""
    if throughput <= 0 or not cpu_percent:
        return NAN
    return 10 * sum(percent for label, percent in cpu_percent.items() if is_ours(label)) / throughput


def level_figures(level: LevelResult, prefix: str = "", *, name: str = "") -> dict[str, float]:
    """A level's throughput, p50 and p99 under its name (or the name given)."""
    key = f"{prefix}{name or level.name} c={level.concurrency}"
    return {
        f"{key} req/s": level.throughput,
        f"{key} p50 ms": level.percentile(0.50),
        f"{key} p99 ms": level.percentile(0.99),
    }


def baseline_figures(figures: Figures) -> dict[str, float]:
    """The three baselines."""
    pct = JobTimes.percentile
    found = {
        "baseline (a) rows/s": figures.pg_insert_rate,
        "baseline (c) p50 ms": pct(figures.handoff_ms, 0.5),
        "baseline (c) p99 ms": pct(figures.handoff_ms, 0.99),
        "baseline (b) CPU ms/request": figures.baseline_cpu_ms,
    }
    if figures.baseline is not None:
        found |= level_figures(figures.baseline, "baseline ")
    return found


def edge_levels(figures: Figures) -> list[LevelResult]:
    """The levels through the edge in the order they ran, CreateJob over gRPC beside REST's c=64."""
    found = []
    for level in figures.levels:
        found.append(level)
        if figures.grpc_create is not None and (level.name, level.concurrency) == ("create", 64):
            found.append(figures.grpc_create)
    return found


def cpu_figures(figures: Figures) -> dict[str, float]:
    """The CPU a request costs at each c=64 level: over our processes, and by process."""
    throughput = {f"{lv.name} c={lv.concurrency}": lv.throughput for lv in [*figures.levels, figures.grpc_create] if lv}
    found: dict[str, float] = {}
    for name, percent in figures.cpu_by_level.items():
        rate = throughput.get(name, 0.0)
        found[f"{name} CPU ms/request"] = cpu_per_request_ms(percent, rate)
        for label, share in percent.items():
            found[f"{name} CPU ms/request: {label}"] = 10 * share / rate if rate > 0 else NAN
    return found


def api_figures(figures: Figures) -> dict[str, float]:
    """The levels through the edge, gRPC's create included, and the CPU a request costs."""
    found: dict[str, float] = {}
    for level in edge_levels(figures):
        found |= level_figures(level)
    found |= cpu_figures(figures)
    if figures.paced_api is not None:
        found |= level_figures(figures.paced_api)
    if figures.paced is not None:
        found |= level_figures(figures.paced, name=f"{figures.paced.name}, worker rendering")
    for level in figures.big_lists:
        found |= level_figures(level, BIG_LIST_PREFIX)
    return found


def job_figures(figures: Figures) -> dict[str, float]:
    """Dispatch, a job's whole-life CPU (with and without the rendering) and its worker RPCs."""
    pct = JobTimes.percentile
    found: dict[str, float] = {}
    for times in figures.timings:
        found[f"dispatch {times.name} p50 ms"] = pct(times.dispatch_ms, 0.5)
        found[f"dispatch {times.name} p99 ms"] = pct(times.dispatch_ms, 0.99)
        found[f"worker overhead {times.name} p50 ms"] = pct(times.overhead_ms, 0.5)
    whole = sum(ms for label, ms in figures.cpu_per_job.items() if is_ours(label)) if figures.cpu_per_job else NAN
    found["job CPU ms"] = whole
    found["rendering CPU ms"] = figures.render_cpu_ms
    found["job CPU less rendering ms"] = whole - figures.render_cpu_ms
    for label, ms in figures.cpu_per_job.items():
        found[f"job CPU ms: {label}"] = ms
    found["worker RPCs per job"] = sum(figures.rpcs_per_job.values()) if figures.rpcs_per_job else NAN
    for method, count in figures.rpcs_per_job.items():
        found[f"worker RPCs per job: {method}"] = count
    return found


def memory_figures(figures: Figures) -> dict[str, float]:
    """Memory after the API levels: RSS per service, PSS of the worker and of its largest child."""
    after = figures.memory_after
    found = {f"{service} RSS MB": after.get(f"{service} (total)", NAN) for service in OTHER_SERVICES}
    found["worker RSS MB"] = after.get("worker (total)", NAN)
    found["worker PSS MB"] = after.get("worker (PSS)", NAN)
    found["celery child PSS MB, largest"] = after.get(LARGEST_CHILD, NAN)
    found["worker concurrency"] = float(figures.worker_concurrency)
    return found


def flat(figures: Figures) -> dict[str, float]:
    """Every figure of the run by a stable name (its unit last); nan where not measured."""
    found = baseline_figures(figures) | api_figures(figures) | job_figures(figures) | memory_figures(figures)
    return {name: (value if math.isfinite(value) else NAN) for name, value in found.items()}
