"""The soak's bounds on made-up samples, and which scenarios a run picks by default."""

from __future__ import annotations

from tests.chaos.__main__ import parse
from tests.chaos.harness import Options
from tests.chaos.scenarios import SCENARIOS
from tests.chaos.soak import Queue, Sample, judge, slope, steady_load

RATE = 4.0
WINDOW = 200.0


def samples(*, rss: list[int]) -> list[Sample]:
    """One sample every 10 s with these worker RSS figures (kB)."""
    return [
        Sample(at=10.0 * i, rss={"services.worker": kb}, processes={"services.worker": 1}) for i, kb in enumerate(rss)
    ]


def queue(backlog: list[int]) -> list[Queue]:
    """One sample every 10 s with these backlogs (the same in Redis and in PostgreSQL)."""
    return [Queue(at=10.0 * i, depth=n, backlog=n) for i, n in enumerate(backlog)]


STEADY = queue([3] * 21)
FLAT = samples(rss=[100_000] * 21)


def test_rss_that_grows_during_the_warm_up_only_passes() -> None:
    found = samples(rss=[50_000, 80_000, 90_000, *[100_000] * 10, 104_000, 105_000, 106_000])

    verdict = judge(found, STEADY, rate=RATE, window=WINDOW)

    assert verdict.problems == []
    assert any("services.worker: 97.7 MiB after warm-up, 102.5 MiB at the end, +5.0%" in n for n in verdict.notes)


def test_rss_that_grows_ten_percent_after_the_warm_up_fails() -> None:
    found = samples(rss=[*[100_000] * 8, *[110_000] * 8])

    verdict = judge(found, STEADY, rate=RATE, window=WINDOW)

    assert verdict.problems == ["RSS of services.worker grew +10.0% after the warm-up (bound 10%)"]


def test_a_backlog_over_thirty_seconds_of_load_fails() -> None:
    found = queue([3] * 10 + [121] + [3] * 10)

    verdict = judge(FLAT, found, rate=RATE, window=WINDOW)

    assert any(
        "max queue depth 121 messages (+100s), max jobs queued or processing 121 (+100s" in n for n in verdict.notes
    )
    assert verdict.problems == [
        "queue depth reached 121 messages (bound 120)",
        "121 jobs were queued or processing at once (bound 120)",
    ]


def test_a_backlog_still_rising_in_the_last_quarter_fails() -> None:
    found = queue([3] * 15 + [10, 25, 40, 55, 70, 85])

    problems = judge(FLAT, found, rate=RATE, window=WINDOW).problems

    assert problems == ["the backlog still rose by 75 jobs over the last quarter (bound 40)"]


def test_too_few_samples_after_the_warm_up_fail() -> None:
    assert judge(samples(rss=[100_000] * 3), STEADY, rate=RATE, window=WINDOW).problems


def test_slope_of_a_line_and_of_a_single_point() -> None:
    assert slope([(0.0, 1.0), (10.0, 21.0)]) == 2.0
    assert slope([(5.0, 1.0)]) == 0.0


def test_the_soak_creates_rate_times_duration_jobs_at_its_own_rate() -> None:
    options = steady_load(Options(jobs=300, rate=8.0, soak_minutes=2, soak_rate=4.0))

    assert (options.jobs, options.rate, options.window) == (480, 4.0, 120.0)


def test_the_default_run_leaves_the_soak_out_and_all_or_its_name_runs_it() -> None:
    assert "soak" not in parse([])[0]
    assert parse([])[0] == [name for name in SCENARIOS if name != "soak"]
    assert parse(["--all"])[0] == list(SCENARIOS)
    assert parse(["-s", "soak", "--soak-minutes", "2"]) == (["soak"], Options(soak_minutes=2.0))
