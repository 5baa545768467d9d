"""The figures of a bench run as text, each beside its baseline or target."""

from __future__ import annotations

from pathlib import Path

from bench import capacity
from bench.chart import svg
from bench.figures import NAN, Figures, edge_levels, flat
from bench.load import LevelResult
from bench.results import Results, comparison, save
from bench.targets import Verdict
from bench.timings import JobTimes

LOADED_RATE = "200/s"

# The memory target of every service but the worker (issue 19), as a ratio beside each figure.
TARGET_RSS_MB = 150.0


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


def target_lines(verdicts: list[Verdict]) -> list[str]:
    """Each target with its figure, its ratio and MET or NOT MET, then how many are met."""
    met = sum(verdict.met for verdict in verdicts)
    return [*(verdict.line() for verdict in verdicts), f"  {met} of {len(verdicts)} targets met"]


def request_cpu_lines(figures: Figures) -> list[str]:
    """ms of CPU a request at each c=64 level, by process, with the % of a core of each during it."""
    levels = list(figures.cpu_by_level)
    throughput = {f"{lv.name} c={lv.concurrency}": lv.throughput for lv in [*figures.levels, figures.grpc_create] if lv}
    # A process idle in every level (the paused worker's) is left out.
    labels = sorted({label for percent in figures.cpu_by_level.values() for label, share in percent.items() if share})
    lines = [
        "CPU a request at c=64, ms by process (% of one core in brackets):",
        f"  {'process':<30} " + " | ".join(levels),
    ]
    for label in labels:
        cells = []
        for level in levels:
            share, rate = figures.cpu_by_level[level].get(label, NAN), throughput.get(level, NAN)
            cells.append(f"{10 * share / rate:.3f} ({share:.0f}%)" if rate else "-")
        lines.append(f"  {label:<30} " + " | ".join(cells))
    return lines


def cpu_lines(named: dict[str, float]) -> list[str]:
    """CPU per create over our processes (REST and gRPC) beside baseline (b)'s, and a job's life
    with and without the rendering, with the worker's RPCs per job."""
    rpcs = {name.split(": ", 1)[1]: n for name, n in named.items() if name.startswith("worker RPCs per job: ")}
    return [
        f"CPU per create at c=64 over our processes: REST {named.get('create c=64 CPU ms/request', NAN):.2f} ms,"
        f" gRPC {named.get('create (gRPC) c=64 CPU ms/request', NAN):.2f} ms;"
        f" baseline (b), its one process: {named['baseline (b) CPU ms/request']:.2f} ms",
        f"a job's whole life at {LOADED_RATE}: {named['job CPU ms']:.2f} ms of CPU in our processes;"
        f" less the rendering ({named['rendering CPU ms']:.2f} ms, measured in the bench):"
        f" {named['job CPU less rendering ms']:.2f} ms",
        f"the worker's RPCs per job: {named['worker RPCs per job']:.2f}"
        + "".join(f", {method} {count:.2f}" for method, count in rpcs.items()),
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
        *(level_line(level, baseline, pg_rate) for level in edge_levels(figures)),
        f"memory in MiB, RSS by process and service, PSS by service (ratio to the {TARGET_RSS_MB:.0f} MB target):",
    ]
    for name in sorted(figures.memory_after):
        idle, after = figures.memory_idle.get(name, 0.0), figures.memory_after[name]
        lines.append(
            f"  {name:<28} idle {idle:7.1f} ({idle / TARGET_RSS_MB:4.2f}x)"
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
    named = flat(figures)
    return "\n".join(
        [*lines, *request_cpu_lines(figures), *cpu_lines(named), *capacity.lines(named, jobs=100, reads=1000)]
    )


def publish(figures: Figures, *, seconds: float, results_dir: Path, chart: Path) -> str:
    """Writes the run's results (keeping the run before) and its chart; the whole report, with the
    targets and what changed since the run before."""
    results = Results.of(flat(figures), seconds=seconds)
    previous = save(results, results_dir)
    chart.write_text(svg(results, previous))
    lines = [render(figures), "targets (issue 19):", *target_lines(results.targets)]
    if previous is not None:
        lines += comparison(previous, results)
    return "\n".join([*lines, f"written: {results_dir / 'latest.json'}, {chart}", ""])
