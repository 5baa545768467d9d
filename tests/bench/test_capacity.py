"""Sizing from a run's CPU figures (bench/capacity.py), from named figures as latest.json holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import capacity
from bench.results import Results

FIGURES = {
    "baseline (a) rows/s": 6000.0,
    "worker RPCs per job": 5.0,
    "rendering CPU ms": 4.0,
    "job CPU ms: services.jobs [jobs]": 14.0,
    "job CPU ms: celery-child [worker]": 10.0,
    "job CPU ms: celery-main [worker]": 2.0,
    "job CPU ms: services.gateway [gateway]": 1.0,
    "job CPU ms: postgres": 3.5,
    "get /jobs/{id} c=64 CPU ms/request: services.jobs [jobs]": 0.7,
    "get /jobs/{id} c=64 CPU ms/request: services.gateway [gateway]": 0.7,
    "get /jobs/{id} c=64 CPU ms/request: load generator": 0.3,
    "create c=64 CPU ms/request: services.jobs [jobs]": 99.0,
}


def test_a_jobs_cost_is_summed_by_service_with_the_rendering_taken_out_of_the_worker() -> None:
    assert capacity.job_ms(FIGURES) == {"jobs": 14.0, "worker": 8.0, "gateway": 1.0, "postgres": 3.5}


def test_a_reads_cost_leaves_out_the_load_generator_and_other_levels() -> None:
    assert capacity.request_ms(FIGURES) == {"jobs": 0.7, "gateway": 0.7}


def test_cores_grow_with_jobs_and_reads_at_the_utilisation_asked() -> None:
    cores = capacity.cores(FIGURES, jobs=100, reads=1000, utilisation=0.5)

    # jobs: 100 x 14 ms + 1000 x 0.7 ms = 2.1 s of CPU a second, at half busy: 4.2 cores.
    assert cores["jobs"] == pytest.approx(4.2)
    assert cores["worker"] == pytest.approx(1.6)
    assert cores["postgres"] == pytest.approx(0.7)


def test_one_postgresql_stops_at_its_commit_rate_over_a_jobs_commits() -> None:
    assert capacity.postgres_commit_ceiling(FIGURES) == 1000.0


def test_the_command_reads_a_runs_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "latest.json"
    path.write_text(Results("abc1234", "2026-12-03T09:00:00Z", {"cpus": "2"}, 10.0, FIGURES).to_json())

    capacity.main([str(path), "--jobs", "100", "--reads", "1000"])

    out = capsys.readouterr().out
    assert "from " in out and "(commit abc1234" in out
    assert "  jobs         3.00 cores  ( 14.00 ms a job,  0.70 ms a read)" in out
    assert "one PostgreSQL runs out of commits near 1000 jobs/s" in out


def test_the_command_refuses_a_negative_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        capacity.main(["--jobs", "-1"])

    assert "--jobs and --reads must not be negative" in capsys.readouterr().err
