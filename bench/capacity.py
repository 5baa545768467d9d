"""Sizing from a run's CPU figures: the cores each service needs for N jobs a second and R reads a
second, and where one PostgreSQL stops (docs/capacity.md).

    python -m bench.capacity --jobs 200 --reads 2000 [bench/results/latest.json]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from bench.results import LATEST, RESULTS_DIR, Results

# The service each CPU label of a run belongs to ("role [service]", or a server's own name).
SERVERS = ("postgres", "redis")
# A service is sized to run this busy at the rate asked, leaving room for bursts and restarts.
UTILISATION = 0.7
# The read whose cost sizes the reads: a GET of one job at c=64 (a list costs more; see the doc).
READ_LEVEL = "get /jobs/{id} c=64"
JOB_PREFIX = "job CPU ms: "
# Baseline (a)'s rows a second are single-row commits; a job commits its create and, at most, one
# transaction per worker RPC (SelectProvider only reads, so this errs on the safe side).
CREATE_COMMITS = 1.0


def service_of(label: str) -> str:
    """jobs, gateway, worker, ... from "services.jobs [jobs]"; postgres and redis as they are."""
    return label[label.rindex("[") + 1 : -1] if label.endswith("]") else label


def by_service(costs: dict[str, float]) -> dict[str, float]:
    """Per-process costs summed by service; the load generator is not part of the system."""
    found: dict[str, float] = {}
    for label, ms in costs.items():
        if label != "load generator" and math.isfinite(ms):
            found[service_of(label)] = found.get(service_of(label), 0.0) + ms
    return found


def job_ms(figures: dict[str, float]) -> dict[str, float]:
    """ms of CPU a job's whole life costs each service; the built-in rendering taken out of the
    worker's, since a hosted provider renders elsewhere."""
    found = by_service({name.removeprefix(JOB_PREFIX): v for name, v in figures.items() if name.startswith(JOB_PREFIX)})
    rendering = figures.get("rendering CPU ms", math.nan)
    if "worker" in found and math.isfinite(rendering):
        found["worker"] = max(found["worker"] - rendering, 0.0)
    return found


def request_ms(figures: dict[str, float], level: str = READ_LEVEL) -> dict[str, float]:
    """ms of CPU one request of a c=64 level costs each service."""
    prefix = f"{level} CPU ms/request: "
    return by_service({name.removeprefix(prefix): v for name, v in figures.items() if name.startswith(prefix)})


def cores(
    figures: dict[str, float], *, jobs: float, reads: float, utilisation: float = UTILISATION
) -> dict[str, float]:
    """Cores each service needs for jobs a second (their whole life) plus reads a second."""
    per_job, per_read = job_ms(figures), request_ms(figures)
    services = dict.fromkeys([*per_job, *per_read])
    return {
        service: (jobs * per_job.get(service, 0.0) + reads * per_read.get(service, 0.0)) / 1000 / utilisation
        for service in services
    }


def postgres_commit_ceiling(figures: dict[str, float]) -> float:
    """Jobs a second at which one PostgreSQL like baseline (a)'s runs out of single-row commits."""
    commits = CREATE_COMMITS + figures.get("worker RPCs per job", math.nan)
    return figures.get("baseline (a) rows/s", math.nan) / commits


def lines(figures: dict[str, float], *, jobs: float, reads: float) -> list[str]:
    """The sizing as text."""
    per_job, per_read = job_ms(figures), request_ms(figures)
    needed = cores(figures, jobs=jobs, reads=reads)
    found = [
        f"cores for {jobs:g} jobs/s and {reads:g} reads/s at {UTILISATION:.0%} busy"
        " (ms of CPU a job's life / a read, by service):"
    ]
    for service, count in sorted(needed.items(), key=lambda item: -item[1]):
        job, read = per_job.get(service, 0.0), per_read.get(service, 0.0)
        found.append(f"  {service:<10} {count:6.2f} cores  ({job:6.2f} ms a job, {read:5.2f} ms a read)")
    rendering = figures.get("rendering CPU ms", math.nan)
    found.append(f"  plus, with the built-in provider, {rendering:.2f} ms a job of rendering in the worker")
    found.append(
        f"one PostgreSQL runs out of commits near {postgres_commit_ceiling(figures):.0f} jobs/s"
        f" (baseline (a) {figures.get('baseline (a) rows/s', math.nan):.0f} single-row commits/s,"
        f" {CREATE_COMMITS + figures.get('worker RPCs per job', math.nan):.1f} commits a job at most)"
    )
    return found


def main(argv: list[str] | None = None) -> None:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="?", default=RESULTS_DIR / LATEST, help="a run's JSON")
    parser.add_argument("--jobs", type=float, default=100.0, help="jobs a second, created and run")
    parser.add_argument("--reads", type=float, default=1000.0, help="GET requests a second")
    args = parser.parse_args(argv)
    if args.jobs < 0 or args.reads < 0:
        parser.error("--jobs and --reads must not be negative")
    results = Results.from_json(args.results.read_text())
    header = f"from {args.results} (commit {results.commit}, {results.date}, {results.machine.get('cpus')} CPUs)"
    sys.stdout.write("\n".join([header, *lines(results.figures, jobs=args.jobs, reads=args.reads), ""]))


if __name__ == "__main__":
    main()
