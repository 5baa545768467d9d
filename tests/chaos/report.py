"""The figures of a scenario and the evidence behind them, as lines for a person to read."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos import accounting
from tests.chaos.accounting import Attempt, JobRow
from tests.chaos.faults import Fault
from tests.chaos.load import FINAL, Accepted, Answers
from tests.chaos.system import System

# Lost jobs (and overlaps) described in full in the report, at most.
STORIES = 4
# Lines about processes that ended or restarted, at most.
EXITS = 16
# Log events that show a recovery path at work, counted in the report.
RECOVERY_EVENTS = (
    "job.publish_failed",
    "job.skipped",
    "job.attempt_failed",
    "job.no_longer_ours",
    "job.retry_scheduled",
    "job.reaped",
    "job.message_lost",
    "dispatch.broker_lost_its_data",
)


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
    # Prompts carried by more than one job (a create that made two).
    created_twice: list[str] = field(default_factory=list)
    # Generations the slow remote provider was paid for, per prompt (None: no remote provider).
    paid: Counter[str] | None = None


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
    # Attempts beyond the first over the accepted jobs (retryCount summed): what the fault cost.
    burned: int = 0
    # Jobs whose remote render was paid for more than once (None: no remote provider).
    paid_twice: list[str] | None = None
    # Video files no completed job names (an attempt's video left behind).
    stale: list[str] = field(default_factory=list)
    created_twice: list[str] = field(default_factory=list)
    # What this scenario holds the system to beyond the common figures, broken: reasons.
    broken: list[str] = field(default_factory=list)
    # The longest recovery the scenario allows, in seconds (None: not bounded).
    recover_bound: float | None = None

    @property
    def failed(self) -> bool:
        """Whether a job was lost, completed twice, created twice, run twice at once or completed
        without its video, a client got a 5xx other than 503, or a scenario's own bound broke."""
        return bool(
            self.lost
            or self.twice
            or self.created_twice
            or self.overlaps
            or self.no_video
            or self.answers.other_5xx
            or self.broken
        )

    def require(
        self,
        *,
        no_attempt_burned: bool,
        no_stale_video: bool,
        max_unavailable: int | None = None,
        recover_within: float | None = None,
    ) -> None:
        """Holds the scenario to its own bounds, noting each one broken."""
        self.recover_bound = recover_within
        if recover_within is not None and self.recover_seconds is None:
            self.broken.append("never recovered: no probe job completed")
        elif recover_within is not None and self.recover_seconds is not None and self.recover_seconds > recover_within:
            self.broken.append(f"recovered in {self.recover_seconds:.1f}s, over the {recover_within:g}s bound")
        if max_unavailable is not None and self.answers.unavailable > max_unavailable:
            self.broken.append(f"{self.answers.unavailable} answers 503, over the {max_unavailable} allowed")
        if no_attempt_burned and self.burned:
            self.broken.append(f"{self.burned} attempts burned by the fault (retryCount summed)")
        if no_attempt_burned and self.paid_twice:
            self.broken.append(f"{len(self.paid_twice)} remote renders paid twice")
        if no_stale_video and self.stale:
            self.broken.append(f"{len(self.stale)} videos of attempts that did not complete remain")
        self.notes.extend(f"BROKEN: {reason}" for reason in self.broken)


def outcome_of(
    name: str, system: System, observed: Observed, *, media: Path, began: float, exit_code: int | None
) -> Outcome:
    """The figures of a scenario from what was observed, the logs, the process watch and the media."""
    records = system.run.records()
    fault = observed.fault
    ids = [a.job_id for a in observed.accepted]
    final = [i for i in ids if i in observed.rows and observed.rows[i].status in FINAL]
    lost = [i for i in ids if i not in final]
    found = accounting.attempts(records, fault.kills, system.watch)
    pairs = [] if found is None else accounting.overlapping(found)
    sure = [(a, b) for a, b in pairs if a.surely_overlaps(b)]
    outcome = Outcome(
        scenario=name,
        fault=fault.name,
        accepted=len(ids),
        final=len(final),
        lost=lost,
        twice=[job_id for job_id, n in accounting.completions(records).items() if n > 1],
        overlaps=None if found is None else [(a, b) for a, b in sure if not fenced(a, b, fault.frozen)],
        no_video=accounting.missing_videos(observed.rows.values(), media),
        answers=observed.answers,
        recover_seconds=None if observed.probed_at is None else observed.probed_at - fault.ended,
        all_final_seconds=None if observed.all_final_at is None else observed.all_final_at - fault.ended,
        took=time.monotonic() - began,
        burned=sum(observed.rows[i].retry_count for i in ids if i in observed.rows),
        paid_twice=None if observed.paid is None else [p for p, n in observed.paid.items() if n > 1],
        stale=accounting.stale_videos(observed.rows.values(), media),
        created_twice=observed.created_twice,
    )
    outcome.notes = _context_notes(system, observed, records, exit_code=exit_code)
    if found is None:
        outcome.notes.append("no job.attempt_started events with a pid in the logs: overlap not measurable")
    else:
        ends = Counter(attempt.how for attempt in found)
        outcome.notes.append(f"{len(found)} attempts started; how they ended: {dict(ends.most_common())}")
    outcome.notes.extend(_lost_stories(records, lost, observed.rows, origin=fault.started))
    outcome.notes.extend(_overlap_lines(outcome.overlaps or [], origin=fault.started))
    outcome.notes.extend(
        f"fenced off (a frozen worker's attempt, refused when it thawed): {text}"
        for text in _overlap_lines([(a, b) for a, b in sure if fenced(a, b, fault.frozen)], origin=fault.started)
    )
    maybe = [(a, b) for a, b in pairs if not a.surely_overlaps(b)]
    outcome.notes.extend(
        f"not proven (an end only bounded): {text}" for text in _overlap_lines(maybe, origin=fault.started)
    )
    outcome.notes.extend(
        f"completed without its video on disk: {job_id} {observed.rows[job_id].result}"
        for job_id in outcome.no_video[:STORIES]
    )
    return outcome


def fenced(first: Attempt, second: Attempt, frozen: list[int]) -> bool:
    """Whether one of two overlapping attempts was a frozen process's that the jobs service
    refused once it thawed: it did nothing while the other ran, and its outcome was not taken."""
    return any(attempt.pid in frozen and attempt.how == "cancelled" for attempt in (first, second))


def _context_notes(
    system: System, observed: Observed, records: list[accounting.Record], *, exit_code: int | None
) -> list[str]:
    """What happened around the figures: the fault, the system's exits, the load's troubles."""
    fault = observed.fault
    notes = list(fault.notes)
    notes.append(f"every job in PostgreSQL, accepted or not, by status: {observed.table}")
    if observed.accepted:
        last = max(a.at for a in observed.accepted) - fault.ended
        notes.append(f"the last create was accepted {last:+.1f}s after the fault ended")
    if observed.deadline_note:
        notes.append(observed.deadline_note)
    notes.extend(_exits(records, origin=fault.started))
    seen = Counter(str(r.get("event")) for r in records if r.get("event") in RECOVERY_EVENTS)
    notes.append(f"recovery events logged: {dict(seen.most_common()) or 'none'}")
    notes.append(f"`make run` exit code after Ctrl-C: {exit_code}")
    if system.outlived:
        notes.append(f"processes that outlived `make run` (killed): {system.outlived}")
    replayed = sum(1 for a in observed.accepted if a.replayed)
    if replayed:
        notes.append(f"{replayed} creates were answered as replays of a create that had landed (Idempotency-Key)")
    if observed.not_accepted:
        notes.append(f"{observed.not_accepted} creates never got a 201 (given up)")
    if observed.answers.failures:
        notes.append(f"requests without an answer: {dict(observed.answers.failures)}")
    if observed.probed_at is None:
        notes.append(f"recovery probe: {observed.probe_note}")
    return notes


def _exits(records: list[accounting.Record], *, origin: float) -> list[str]:
    """Log lines that say a process of the system ended or was restarted."""
    quiet = {"run.ready", "run.stopping", "run.stopped"}
    lines = [
        f"+{accounting.timestamp(r) - origin:.1f}s {r.get('service')}: {r['event']} "
        + " ".join(f"{k}={v}" for k, v in r.items() if k not in {"event", "timestamp", "level", "service"})
        for r in sorted((r for r in records if "timestamp" in r), key=accounting.timestamp)
        if str(r.get("event")).startswith(("run.", "worker.celery")) and r.get("event") not in quiet
    ]
    return lines if len(lines) <= EXITS else [*lines[:EXITS], f"... and {len(lines) - EXITS} more"]


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
    if outcome.recover_bound is not None:
        recover += f" (bound {outcome.recover_bound:g}s)"
    settled = "never" if outcome.all_final_seconds is None else f"{outcome.all_final_seconds:.1f}s"
    verdict = "FAIL" if outcome.failed else "ok"
    return (
        f"{verdict:4} {outcome.scenario}: accepted {outcome.accepted}, final {outcome.final}, "
        f"lost {len(outcome.lost)}, completed twice {len(outcome.twice)}, two workers at once {overlaps}, "
        f"no video {len(outcome.no_video)}, created twice {len(outcome.created_twice)}, "
        f"attempts burned {outcome.burned}, paid twice {_count(outcome.paid_twice)}, "
        f"stale videos {len(outcome.stale)}, "
        f"5xx {outcome.answers.other_5xx} (+{outcome.answers.unavailable} x 503), recovered in {recover}, "
        f"all final {settled} after the fault (took {outcome.took:.0f}s)"
    )


def _count(items: list[str] | None) -> str:
    return "n/a" if items is None else str(len(items))


def table(outcomes: list[Outcome]) -> str:
    """The final table of every scenario."""
    head = ["scenario", "accepted", "final", "lost", "twice", "created twice", "overlap", "no video", "burned"]
    head += ["paid twice", "stale", "5xx", "503", "recover", "bound"]
    rows = [[*head, "all final", "took"]]
    for o in outcomes:
        rows.append(
            [
                o.scenario,
                str(o.accepted),
                str(o.final),
                str(len(o.lost)),
                str(len(o.twice)),
                str(len(o.created_twice)),
                "n/a" if o.overlaps is None else str(len(o.overlaps)),
                str(len(o.no_video)),
                str(o.burned),
                _count(o.paid_twice),
                str(len(o.stale)),
                str(o.answers.other_5xx),
                str(o.answers.unavailable),
                "never" if o.recover_seconds is None else f"{o.recover_seconds:.1f}s",
                "-" if o.recover_bound is None else f"{o.recover_bound:g}s",
                "never" if o.all_final_seconds is None else f"{o.all_final_seconds:.1f}s",
                f"{o.took:.0f}s",
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
