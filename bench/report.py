"""The figures of a bench run as text, each beside its baseline or target."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.load import LevelResult
from bench.timings import JobTimes

TARGET_CREATE = 1000.0
TARGET_RATIO = 0.8
TARGET_GET_P99_MS = 10.0
TARGET_RSS_MB = 150.0
TARGET_PACED_P99_MS = 50.0
TARGET_DISPATCH_P50_MS = 10.0
TARGET_LIST_P99_MS = 10.0


@dataclass
class Figures:
    """Everything one run measured."""

    pg_insert_rate: float = 0.0
    pg_connections: int = 0
    baseline: LevelResult | None = None
    levels: list[LevelResult] = field(default_factory=list)
    memory_idle: dict[str, float] = field(default_factory=dict)
    memory_after: dict[str, float] = field(default_factory=dict)
    cpu_percent: dict[str, float] = field(default_factory=dict)
    load_generator: str = ""
    paced: LevelResult | None = None
    paced_api: LevelResult | None = None
    handoff_ms: list[float] = field(default_factory=list)
    timings: list[JobTimes] = field(default_factory=list)
    cpu_per_job: dict[str, float] = field(default_factory=dict)
    seed_seconds: float = 0.0
    big_lists: list[LevelResult] = field(default_factory=list)


def level_line(level: LevelResult, baseline: float, pg_rate: float) -> str:
    """One level: throughput with its ratios to the baselines, p50/p99 and the non-2xx answers."""
    bad = {code: n for code, n in level.statuses.items() if code >= 300}
    errors = f", non-2xx {dict(bad)}" if bad else ""
    errors += f", failed {level.failures}" if level.failures else ""
    return (
        f"  {level.name:<26} c={level.concurrency:<3} {level.throughput:8.1f} req/s"
        f"  ({level.throughput / baseline:5.2f}x (b), {level.throughput / pg_rate:5.2f}x (a))"
        f"  p50 {level.percentile(0.50):7.1f} ms  p99 {level.percentile(0.99):7.1f} ms"
        f"  n={len(level.latencies)}{errors}"
    )


def verdict(ok: bool) -> str:
    """MET or NOT MET."""
    return "MET" if ok else "NOT MET"


def targets(figures: Figures, baseline: float) -> list[str]:
    """The issue's targets, each with the figure that decides it."""
    create64 = next((lv for lv in figures.levels if lv.name == "create" and lv.concurrency == 64), None)
    gets = [lv for lv in figures.levels if lv.name != "create"]
    rate = create64.throughput if create64 else 0.0
    paced = figures.paced.percentile(0.99) if figures.paced else float("nan")
    paced_api = figures.paced_api.percentile(0.99) if figures.paced_api else float("nan")
    idle = next((t for t in figures.timings if t.name == "idle"), None)
    dispatch = JobTimes.percentile(idle.dispatch_ms, 0.50) if idle else float("nan")
    services = {name: mb for name, mb in figures.memory_after.items() if name.endswith("(total)")}
    worst = max(services.items(), key=lambda item: item[1], default=("-", 0.0))
    shared = {name: mb for name, mb in figures.memory_after.items() if name.endswith("(PSS)")}
    worst_pss = max(shared.items(), key=lambda item: item[1], default=("-", 0.0))
    return [
        f"  creation c=64 >= {TARGET_CREATE:.0f} jobs/s: {rate:.1f}  {verdict(rate >= TARGET_CREATE)}",
        f"  creation c=64 >= {TARGET_RATIO}x (b): {rate / baseline:.2f}x  {verdict(rate >= TARGET_RATIO * baseline)}",
        *(
            f"  {lv.name} c={lv.concurrency} p99 < {TARGET_GET_P99_MS:.0f} ms: {lv.percentile(0.99):.1f} ms"
            f"  {verdict(lv.percentile(0.99) < TARGET_GET_P99_MS)}"
            for lv in gets
        ),
        f"  create p99 at 200/s < {TARGET_PACED_P99_MS:.0f} ms, worker paused: {paced_api:.1f} ms"
        f"  {verdict(paced_api < TARGET_PACED_P99_MS)}",
        f"  create p99 at 200/s < {TARGET_PACED_P99_MS:.0f} ms, worker rendering on the same cores: {paced:.1f} ms"
        f"  {verdict(paced < TARGET_PACED_P99_MS)}",
        f"  dispatch p50, worker idle < {TARGET_DISPATCH_P50_MS:.0f} ms: {dispatch:.1f} ms"
        f"  {verdict(dispatch < TARGET_DISPATCH_P50_MS)}",
        *(
            f"  list over 1M jobs, {lv.name}, p99 < {TARGET_LIST_P99_MS:.0f} ms: {lv.percentile(0.99):.1f} ms"
            f"  {verdict(lv.percentile(0.99) < TARGET_LIST_P99_MS)}"
            for lv in figures.big_lists
        ),
        f"  each service < {TARGET_RSS_MB:.0f} MB RSS (its processes summed): worst {worst[0]} {worst[1]:.1f} MB"
        f"  {verdict(worst[1] < TARGET_RSS_MB)}",
        f"  each service < {TARGET_RSS_MB:.0f} MB PSS (shared pages counted once): worst {worst_pss[0]}"
        f" {worst_pss[1]:.1f} MB  {verdict(worst_pss[1] < TARGET_RSS_MB)}",
    ]


def timing_lines(figures: Figures) -> list[str]:
    """Dispatch latency (with its ratio to baseline (c), the broker's bare hand-off) and worker
    overhead (with its ratio to the rendering it surrounds) of each dispatch level."""
    pct = JobTimes.percentile
    handoff = pct(figures.handoff_ms, 0.5) or float("nan")
    lines = []
    for times in figures.timings:
        dispatch = pct(times.dispatch_ms, 0.5)
        overhead, render = pct(times.overhead_ms, 0.5), pct(times.render_ms, 0.5) or float("nan")
        lines.append(
            f"  {times.name:<8} jobs {times.jobs:5d} (final {times.finished:5d})"
            f"  dispatch p50 {dispatch:8.1f} ms ({dispatch / handoff:7.1f}x (c))"
            f"  p99 {pct(times.dispatch_ms, 0.99):8.1f} ms"
            f"  worker overhead p50 {overhead:6.1f} ms ({overhead / render:4.1f}x the rendering, p50 {render:.0f} ms)"
            f"  p99 {pct(times.overhead_ms, 0.99):6.1f} ms"
        )
    return lines


def render(figures: Figures) -> str:
    """The whole report."""
    assert figures.baseline is not None
    baseline = figures.baseline.throughput or float("nan")
    pg_rate = figures.pg_insert_rate or float("nan")
    handoff50 = JobTimes.percentile(figures.handoff_ms, 0.5)
    lines = [
        "",
        f"load generator: {figures.load_generator}",
        "baselines (same run, same machine):",
        f"  (a) PostgreSQL insert, one transaction a row, {figures.pg_connections} connections:"
        f" {figures.pg_insert_rate:.1f} rows/s",
        "  (b) FastAPI + asyncpg + Redis LPUSH, one uvicorn process:",
        level_line(figures.baseline, baseline, pg_rate),
        f"  (c) the broker's hand-off, LPUSH to a waiting BRPOP: p50 {handoff50:.2f} ms"
        f"  p99 {JobTimes.percentile(figures.handoff_ms, 0.99):.2f} ms  n={len(figures.handoff_ms)}",
        "through the Envoy edge:",
        *(level_line(level, baseline, pg_rate) for level in figures.levels),
        f"memory in MiB, RSS by process and service, PSS by service (ratio to the {TARGET_RSS_MB:.0f} MB target):",
    ]
    for name in sorted(figures.memory_after):
        idle, after = figures.memory_idle.get(name, 0.0), figures.memory_after[name]
        lines.append(
            f"  {name:<22} idle {idle:7.1f} ({idle / TARGET_RSS_MB:4.2f}x)"
            f"  after load {after:7.1f} ({after / TARGET_RSS_MB:4.2f}x)"
        )
    if figures.paced is not None and figures.paced_api is not None:
        lines += [
            "creation at a fixed rate (open loop, latency from when each request was due):",
            "  worker paused (workers on other machines):",
            level_line(figures.paced_api, baseline, pg_rate),
            "  worker rendering every job on the same two cores:",
            level_line(figures.paced, baseline, pg_rate),
        ]
    lines += [
        "dispatch (created_at to started_at) and worker overhead (started_at to completed_at less rendering):",
        *timing_lines(figures),
        "CPU per job over its whole life at 200/s (creation to completion), ms by process:",
        *(f"  {name:<30} {ms:6.2f}" for name, ms in sorted(figures.cpu_per_job.items(), key=lambda item: -item[1])),
    ]
    if figures.big_lists:
        lines.append(f"lists over a table of 1,000,000 jobs (bulk-loaded in {figures.seed_seconds:.1f}s), c=1:")
        lines += [level_line(level, baseline, pg_rate) for level in figures.big_lists]
    lines.append("CPU during creation at c=64, % of one core:")
    for name, percent in sorted(figures.cpu_percent.items(), key=lambda item: -item[1]):
        lines.append(f"  {name:<22} {percent:6.1f}")
    lines += ["targets (issue 9):", *targets(figures, baseline), ""]
    return "\n".join(lines)
