"""One scenario from start to end: own servers, `make run`, load, a fault, recovery, accounting."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from tests.chaos import accounting
from tests.chaos.accounting import Attempt, JobRow
from tests.chaos.faults import Fault
from tests.chaos.load import FINAL, Accepted, Answers, Api, create_jobs, job_mix, probe
from tests.chaos.servers import Postgres, Redis
from tests.chaos.system import System, system_env

# Lost jobs described in full in the report, at most.
STORIES = 4


@dataclass(frozen=True)
class Options:
    """What every scenario shares."""

    jobs: int = 300
    rate: float = 8.0
    senders: int = 4
    # An accepted job not final this long after the fault ends (or the last create) is lost.
    settle: float = 120.0
    seed: int = 0
    logs: Path | None = None

    @property
    def window(self) -> float:
        """Seconds the creates take at the rate."""
        return self.jobs / self.rate


@dataclass
class Context:
    """What a scenario's fault may act on."""

    options: Options
    system: System
    postgres: Postgres
    redis: Redis
    rng: random.Random
    load_started: float

    async def at(self, fraction: float) -> None:
        """Sleeps until this fraction of the load's window has passed."""
        await asyncio.sleep(max(0.0, self.load_started + fraction * self.options.window - time.monotonic()))


Scenario = Callable[[Context], Awaitable[Fault]]


@dataclass
class Observed:
    """What the load and the database showed while the system ran."""

    fault: Fault
    accepted: list[Accepted]
    not_accepted: int
    answers: Answers
    rows: dict[str, JobRow]
    ready_at: float | None
    probed_at: float | None
    probe_note: str
    all_final_at: float | None
    deadline_note: str
    table: dict[str, int]


@dataclass
class Outcome:
    """The figures of one scenario."""

    scenario: str
    fault: str
    accepted: int
    final: int
    lost: list[str]
    twice: list[str]
    overlaps: list[tuple[Attempt, Attempt]] | None
    no_video: list[str]
    answers: Answers
    recover_seconds: float | None
    all_final_seconds: float | None
    took: float
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """Whether a job was lost, completed twice, run twice at once or completed without its video,
        or a client got a 5xx other than 503."""
        return bool(self.lost or self.twice or self.overlaps or self.no_video or self.answers.other_5xx)


def run_scenario(name: str, scenario: Scenario, options: Options) -> Outcome:
    """Runs one scenario on its own servers; nothing of it is left running or on disk after."""
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"vg-chaos-{name}-"))
    postgres, redis = Postgres(root), Redis(root)
    try:
        postgres.create()
        redis.start()
        system = System(system_env(database_url=postgres.url, redis_url=redis.url, workdir=root), root)
        try:
            system.wait_ready()
            observed = asyncio.run(_drive(system, postgres, redis, scenario, options))
        finally:
            code = system.stop()
        outcome = _account(name, system, observed, media=root / "media", began=began, exit_code=code)
        if options.logs is not None:
            options.logs.mkdir(parents=True, exist_ok=True)
            (options.logs / f"{name}.log").write_text(system.run.output())
        return outcome
    finally:
        redis.close()
        postgres.close()
        shutil.rmtree(root, ignore_errors=True)


async def _drive(system: System, postgres: Postgres, redis: Redis, scenario: Scenario, options: Options) -> Observed:
    rng = random.Random(options.seed)
    async with httpx.AsyncClient(base_url=system.edge_url, timeout=30) as client:
        api = Api(client, system.alive)
        specs = job_mix(options.jobs, label=scenario.__name__, rng=rng)
        context = Context(options, system, postgres, redis, rng, time.monotonic())
        load = asyncio.create_task(
            create_jobs(api, specs, rate=options.rate, senders=options.senders, give_up_after=options.settle)
        )
        fault = await scenario(context)
        ready_at, probed_at, probe_note = await probe(api, timeout=options.settle)
        await load
        last = max([fault.ended, *(a.at for a in api.accepted)])
        deadline = time.monotonic() + max(0.0, last + options.settle - time.time())
        ids = [a.job_id for a in api.accepted]
        all_final_at, rows = await accounting.wait_final(postgres.url, ids, deadline=deadline, alive=system.alive)
        try:
            table = await accounting.status_counts(postgres.url)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            table = {}
    note = "" if system.alive() else "`make run` had exited"
    return Observed(
        fault=fault,
        accepted=api.accepted,
        not_accepted=len(api.not_accepted),
        answers=api.answers,
        rows=rows,
        ready_at=ready_at,
        probed_at=probed_at,
        probe_note=probe_note,
        all_final_at=all_final_at,
        deadline_note=note,
        table=table,
    )


def _account(
    name: str, system: System, observed: Observed, *, media: Path, began: float, exit_code: int | None
) -> Outcome:
    records = system.run.records()
    fault = observed.fault
    ids = [a.job_id for a in observed.accepted]
    final = [i for i in ids if i in observed.rows and observed.rows[i].status in FINAL]
    lost = [i for i in ids if i not in final]
    twice = [job_id for job_id, n in accounting.completions(records).items() if n > 1]
    found = accounting.attempts(records, fault.kills, system.watch)
    pairs = [] if found is None else accounting.overlapping(found)
    overlaps = None if found is None else [(a, b) for a, b in pairs if a.surely_overlaps(b)]
    no_video = accounting.missing_videos(observed.rows.values(), media)
    notes = list(fault.notes)
    notes.append(f"every job in PostgreSQL, accepted or not, by status: {observed.table}")
    notes.append(f"`make run` exit code after Ctrl-C: {exit_code}")
    if observed.accepted:
        last = max(a.at for a in observed.accepted) - fault.ended
        notes.append(f"the last create was accepted {last:+.1f}s after the fault ended")
    if observed.deadline_note:
        notes.append(observed.deadline_note)
    notes.extend(_exits(records, origin=fault.started))
    if observed.not_accepted:
        notes.append(f"{observed.not_accepted} creates never got a 201 (given up)")
    if observed.answers.failures:
        notes.append(f"requests without an answer: {dict(observed.answers.failures)}")
    if found is None:
        notes.append("no job.attempt_started events with a pid in the logs: overlap not measurable")
    if observed.probed_at is None:
        notes.append(f"recovery probe: {observed.probe_note}")
    notes.extend(_lost_stories(records, lost, observed.rows, origin=fault.started))
    notes.extend(_overlap_lines(overlaps or [], origin=fault.started))
    maybe = [(a, b) for a, b in pairs if not a.surely_overlaps(b)]
    notes.extend(f"not proven (an end only bounded): {text}" for text in _overlap_lines(maybe, origin=fault.started))
    notes.extend(
        f"completed without its video on disk: {job_id} {observed.rows[job_id].result}" for job_id in no_video[:STORIES]
    )
    left = list(system.pids_left())
    if left:
        notes.append(f"processes left running after stop (killed): {left}")
    return Outcome(
        scenario=name,
        fault=fault.name,
        accepted=len(ids),
        final=len(final),
        lost=lost,
        twice=twice,
        overlaps=overlaps,
        no_video=no_video,
        answers=observed.answers,
        recover_seconds=None if observed.probed_at is None else observed.probed_at - fault.ended,
        all_final_seconds=None if observed.all_final_at is None else observed.all_final_at - fault.ended,
        took=time.monotonic() - began,
        notes=notes,
    )


def _exits(records: list[accounting.Record], *, origin: float) -> list[str]:
    """Log lines that say a process of the system ended or was restarted."""
    quiet = {"run.ready", "run.stopping", "run.stopped"}
    return [
        f"+{accounting.timestamp(r) - origin:.1f}s {r.get('service')}: {r['event']} "
        + " ".join(f"{k}={v}" for k, v in r.items() if k not in {"event", "timestamp", "level", "service"})
        for r in records
        if "timestamp" in r
        and str(r.get("event")).startswith(("run.", "worker.celery"))
        and r.get("event") not in quiet
    ][:12]


def _lost_stories(
    records: list[accounting.Record], lost: list[str], rows: dict[str, JobRow], *, origin: float
) -> list[str]:
    """Why jobs were lost: counts by state and last event, and the full story of a few."""
    if not lost:
        return []
    last_event = {}
    for record in sorted(
        (r for r in records if "timestamp" in r and r.get("job_id") in lost), key=accounting.timestamp
    ):
        last_event[str(record["job_id"])] = f"{record.get('service')}:{record['event']}"
    groups: dict[str, int] = {}
    for job_id in lost:
        row = rows.get(job_id)
        key = f"status={row.status if row else 'unread'} last log={last_event.get(job_id, 'none')}"
        groups[key] = groups.get(key, 0) + 1
    lines = [f"lost: {n} x {key}" for key, n in sorted(groups.items(), key=lambda item: -item[1])]
    for job_id in lost[:STORIES]:
        row = rows.get(job_id)
        lines.append(f"lost job {job_id}: {row.describe() if row else 'row not read'}")
        lines.extend(f"    {line}" for line in accounting.story(records, job_id, origin=origin))
    return lines


def _overlap_lines(pairs: list[tuple[Attempt, Attempt]], *, origin: float) -> list[str]:
    def span(a: Attempt) -> str:
        end = "?" if a.end is None else f"{a.end - origin:+.2f}s"
        return f"pid {a.pid} {a.start - origin:+.2f}s..{end} ({a.how})"

    return [f"two workers at once on {a.job_id}: {span(a)} and {span(b)}" for a, b in pairs[:STORIES]]


def line(outcome: Outcome) -> str:
    """One line of figures for a scenario."""
    overlaps = "n/a" if outcome.overlaps is None else str(len(outcome.overlaps))
    recover = "never" if outcome.recover_seconds is None else f"{outcome.recover_seconds:.1f}s"
    settled = "never" if outcome.all_final_seconds is None else f"{outcome.all_final_seconds:.1f}s"
    verdict = "FAIL" if outcome.failed else "ok"
    return (
        f"{verdict:4} {outcome.scenario}: accepted {outcome.accepted}, final {outcome.final}, "
        f"lost {len(outcome.lost)}, completed twice {len(outcome.twice)}, two workers at once {overlaps}, "
        f"no video {len(outcome.no_video)}, "
        f"5xx {outcome.answers.other_5xx} (+{outcome.answers.unavailable} x 503), recovered in {recover}, "
        f"all final {settled} after the fault (took {outcome.took:.0f}s)"
    )


def table(outcomes: list[Outcome]) -> str:
    """The final table of every scenario."""
    head = ["scenario", "accepted", "final", "lost", "twice", "overlap", "no video", "5xx", "503", "recover"]
    rows = [[*head, "all final", "took"]]
    for o in outcomes:
        rows.append(
            [
                o.scenario,
                str(o.accepted),
                str(o.final),
                str(len(o.lost)),
                str(len(o.twice)),
                "n/a" if o.overlaps is None else str(len(o.overlaps)),
                str(len(o.no_video)),
                str(o.answers.other_5xx),
                str(o.answers.unavailable),
                "never" if o.recover_seconds is None else f"{o.recover_seconds:.1f}s",
                "never" if o.all_final_seconds is None else f"{o.all_final_seconds:.1f}s",
                f"{o.took:.0f}s",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
