"""The chaos suite's evidence rules, on made-up log lines: what counts as two workers at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from tests.chaos import accounting
from tests.chaos.faults import Kill
from tests.chaos.load import Answers
from tests.chaos.report import Outcome, fenced
from tests.chaos.report import line as report_line
from tests.chaos.system import ProcessWatch

T0 = 1_800_000_000.0


def line(event: str, at: float, **fields: Any) -> dict[str, Any]:
    """A log line as the services print it, at T0 + at seconds."""
    return {"event": event, "timestamp": datetime.fromtimestamp(T0 + at, UTC).isoformat(), **fields}


def started(job: str, pid: int, at: float, task: str = "") -> dict[str, Any]:
    """The worker's line when process pid starts working on job."""
    return line("job.attempt_started", at, job_id=job, pid=pid, attempt=0, task_id=task or str(uuid.uuid4()))


def finished(job: str, pid: int, at: float) -> dict[str, Any]:
    """The worker's line when process pid stops working on job."""
    return line("job.attempt_finished", at, job_id=job, pid=pid, outcome="completed")


def pairs(records: list[dict[str, Any]], kills: list[Kill] | None = None) -> list[tuple[bool, int, int]]:
    """(surely, pid, pid) for every overlapping pair of attempts."""
    found = accounting.attempts(records, kills or [], ProcessWatch(0))
    assert found is not None
    return [(a.surely_overlaps(b), a.pid, b.pid) for a, b in accounting.overlapping(found)]


def test_two_processes_on_one_job_at_the_same_time_overlap() -> None:
    records = [started("j", 1, 0), started("j", 2, 1), finished("j", 1, 2), finished("j", 2, 3)]
    assert pairs(records) == [(True, 1, 2)]


def test_attempts_one_after_the_other_do_not_overlap() -> None:
    records = [started("j", 1, 0), finished("j", 1, 1), started("j", 2, 2), finished("j", 2, 3)]
    assert pairs(records) == []


def test_a_killed_attempt_ends_when_it_was_killed() -> None:
    records = [started("j", 1, 0), started("j", 2, 12), finished("j", 2, 13)]
    assert pairs(records, [Kill(1, "celery-child", T0 + 1)]) == []
    assert pairs(records, [Kill(1, "celery-child", T0 + 20)]) == [(True, 1, 2)]


def test_celery_logging_that_the_task_raised_ends_the_attempt() -> None:
    task = str(uuid.uuid4())
    raised = line(f"Task videogen.generate_video[{task}] raised unexpected: RpcError()", 2)
    records = [started("j", 1, 0, task), raised, started("j", 2, 5), finished("j", 2, 6)]
    assert pairs(records) == []


def test_an_end_bounded_only_by_the_next_attempt_of_the_process_proves_nothing() -> None:
    records = [started("j", 1, 0), started("j", 2, 3), finished("j", 2, 4), started("k", 1, 10)]
    assert pairs(records) == [(False, 1, 2)]


def test_no_attempt_started_line_means_overlap_is_not_measurable() -> None:
    assert accounting.attempts([finished("j", 1, 1)], [], ProcessWatch(0)) is None


def test_only_the_jobs_service_completing_a_job_counts() -> None:
    records = [
        line("job.completed", 1, job_id="j", service="jobs"),
        line("job.completed", 2, job_id="j", service="jobs"),
        line("job.completed", 3, job_id="k", service="jobs"),
        line("job.completed", 4, job_id="k", service="worker"),
    ]
    assert accounting.completions(records) == {"j": 2, "k": 1}


def test_an_overlap_with_a_frozen_workers_refused_attempt_is_fenced_not_twice() -> None:
    frozen = accounting.Attempt("job-1", 10, T0, T0 + 20, "cancelled")
    other = accounting.Attempt("job-1", 11, T0 + 10, T0 + 30, "completed")
    running = accounting.Attempt("job-1", 12, T0 + 10, T0 + 30, "completed")

    assert fenced(frozen, other, frozen=[10])
    # Not frozen, or frozen but its outcome taken: two workers at once.
    assert not fenced(frozen, other, frozen=[])
    assert not fenced(running, other, frozen=[12])


def outcome(recover_seconds: float | None) -> Outcome:
    """A scenario's figures with nothing wrong but, perhaps, its recovery."""
    return Outcome(
        scenario="s",
        fault="f",
        accepted=1,
        final=1,
        lost=[],
        twice=[],
        overlaps=[],
        no_video=[],
        answers=Answers(),
        recover_seconds=recover_seconds,
        all_final_seconds=1.0,
        took=1.0,
    )


def test_a_recovery_slower_than_the_scenarios_bound_fails_it() -> None:
    on_time, late, never = outcome(19.9), outcome(20.1), outcome(None)
    for each in (on_time, late, never):
        each.require(no_attempt_burned=False, no_stale_video=False, recover_within=20.0)
    assert not on_time.failed
    assert late.failed and late.broken == ["recovered in 20.1s, over the 20s bound"]
    assert never.failed and never.broken == ["never recovered: no probe job completed"]
    assert "recovered in 19.9s (bound 20s)" in report_line(on_time)
