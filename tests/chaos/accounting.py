"""What became of the accepted jobs, from evidence: PostgreSQL's rows and the processes' log lines."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from tests.chaos.faults import Kill
from tests.chaos.load import FINAL
from tests.chaos.system import SAMPLE_INTERVAL, ProcessWatch

Record = dict[str, Any]
# Fields a job's story leaves out: said otherwise, or the same on every line.
_STORY_HIDES = frozenset({"event", "timestamp", "job_id", "level", "service", "request_id", "task_id"})
_ROWS = """
    SELECT id, status, retry_count, max_retries, queue, worker_id, error_message,
           enqueued_at, heartbeat_at, updated_at, result::text AS result
    FROM jobs WHERE id = ANY($1::text[])
"""


@dataclass(frozen=True)
class JobRow:
    """A job as PostgreSQL holds it."""

    id: str
    status: str
    retry_count: int
    max_retries: int
    queue: str
    worker_id: str | None
    error: str | None
    enqueued_at: datetime | None
    heartbeat_at: datetime | None
    updated_at: datetime
    result: dict[str, Any] | None

    def describe(self) -> str:
        """One line for a report."""
        when = {"enqueued": self.enqueued_at, "heartbeat": self.heartbeat_at, "updated": self.updated_at}
        times = " ".join(f"{name}={value:%H:%M:%S.%f}"[:-3] for name, value in when.items() if value is not None)
        error = f" error={self.error[:80]!r}" if self.error else ""
        return (
            f"{self.status} retry {self.retry_count}/{self.max_retries} on {self.queue}"
            f" worker={self.worker_id} {times}{error}"
        )


async def read_jobs(database_url: str, ids: Iterable[str]) -> dict[str, JobRow]:
    """The rows of these jobs, read directly from PostgreSQL."""
    connection = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await connection.fetch(_ROWS, list(ids), timeout=10)
    finally:
        await connection.close()
    return {
        row["id"]: JobRow(
            id=row["id"],
            status=row["status"],
            retry_count=row["retry_count"],
            max_retries=row["max_retries"],
            queue=row["queue"],
            worker_id=row["worker_id"],
            error=row["error_message"],
            enqueued_at=row["enqueued_at"],
            heartbeat_at=row["heartbeat_at"],
            updated_at=row["updated_at"],
            result=None if row["result"] is None else json.loads(row["result"]),
        )
        for row in rows
    }


async def wait_final(
    database_url: str, ids: list[str], *, deadline: float, alive: Callable[[], bool]
) -> tuple[float | None, dict[str, JobRow]]:
    """Polls PostgreSQL until every job is final, the deadline (monotonic) passes or the system
    exits; answers when they all were final (epoch seconds, None if never) and the last rows."""
    rows: dict[str, JobRow] = {}
    while True:
        try:
            rows = await read_jobs(database_url, ids)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            pass
        else:
            if len(rows) == len(ids) and all(row.status in FINAL for row in rows.values()):
                return time.time(), rows
        if time.monotonic() > deadline or not alive():
            return None, rows
        await asyncio.sleep(0.5)


async def status_counts(database_url: str) -> dict[str, int]:
    """How many jobs of the whole table are in each status (accepted or not)."""
    connection = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await connection.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status", timeout=10)
    finally:
        await connection.close()
    return {row["status"]: row["n"] for row in rows}


async def created_twice(database_url: str) -> list[str]:
    """Prompts that more than one job of the table carries: a create that made two jobs (every
    job of the load has a prompt of its own)."""
    connection = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await connection.fetch("SELECT prompt FROM jobs GROUP BY prompt HAVING count(*) > 1", timeout=10)
    finally:
        await connection.close()
    return [row["prompt"] for row in rows]


def stale_videos(rows: Iterable[JobRow], media: Path) -> list[str]:
    """Video files (partials aside) that no completed job's result names: an attempt's video left
    behind after the attempt lost its job."""
    named = {str((row.result or {}).get("storage_key")) for row in rows if row.status == "completed"}
    if not media.is_dir():
        return []
    return sorted(
        str(path.relative_to(media))
        for path in media.rglob("*.mp4")
        if ".partial" not in path.parts and str(path.relative_to(media)) not in named
    )


def missing_videos(rows: Iterable[JobRow], media: Path) -> list[str]:
    """Completed jobs whose stored video is not on disk at the size their result records."""
    missing = []
    for row in rows:
        if row.status != "completed":
            continue
        result = row.result or {}
        file = media / str(result.get("storage_key", ""))
        if not file.is_file() or file.stat().st_size != result.get("size_bytes"):
            missing.append(row.id)
    return missing


def timestamp(record: Record) -> float:
    """A log line's time (epoch seconds)."""
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


def events(records: list[Record], name: str) -> list[Record]:
    """The log lines of one event, oldest first."""
    return sorted((r for r in records if r.get("event") == name and "timestamp" in r), key=timestamp)


def completions(records: list[Record]) -> Counter[str]:
    """How often the jobs service logged job.completed, per job id."""
    return Counter(str(r.get("job_id")) for r in events(records, "job.completed") if r.get("service") == "jobs")


@dataclass(frozen=True)
class Attempt:
    """A worker process working on a job, from job.attempt_started until it stopped."""

    job_id: str
    pid: int
    start: float
    end: float | None
    how: str

    @property
    def certain(self) -> bool:
        """Whether the end was seen (a log line, a kill, a death), not only bounded."""
        return self.how not in UNCERTAIN

    def overlaps(self, other: Attempt) -> bool:
        """Whether both ran at the same time (an unknown end runs to the end of observation)."""
        self_end = self.end if self.end is not None else float("inf")
        other_end = other.end if other.end is not None else float("inf")
        return self.start < other_end and other.start < self_end

    def surely_overlaps(self, other: Attempt) -> bool:
        """Whether the later one started before the earlier one's seen (not only bounded) end."""
        first, second = sorted((self, other), key=lambda attempt: attempt.start)
        return first.certain and first.end is not None and second.start < first.end


# How an attempt's end was found when only an upper bound of it is known.
UNCERTAIN = frozenset({"superseded", "no end seen"})
_TRACE = re.compile(r"^Task \S+\[([0-9a-f-]{36})\] (succeeded|raised|retry)")


def _task_ends(records: list[Record]) -> dict[str, list[float]]:
    """When Celery logged that a task returned, raised or asked for a retry, per task id."""
    ends: dict[str, list[float]] = {}
    for record in records:
        match = _TRACE.match(str(record.get("event", "")))
        if match and "timestamp" in record:
            ends.setdefault(match.group(1), []).append(timestamp(record))
    return ends


def attempts(records: list[Record], kills: list[Kill], watch: ProcessWatch) -> list[Attempt] | None:
    """Every attempt, ended by the first of: job.attempt_finished of the same job and pid, Celery's
    line that its task returned or raised, our kill of the pid, the last time the process was
    seen alive; else bounded by the next job.attempt_started of that pid (a prefork child runs one
    task at a time). None when no job.attempt_started with a pid was logged."""
    started = [r for r in events(records, "job.attempt_started") if "pid" in r]
    if not started:
        return None
    by_pid: dict[int, list[Record]] = {}
    for record in [*started, *events(records, "job.attempt_finished")]:
        if "pid" in record:
            by_pid.setdefault(int(record["pid"]), []).append(record)
    for lines in by_pid.values():
        lines.sort(key=timestamp)
    task_ends = _task_ends(records)
    found = []
    for record in started:
        job_id, pid, start = str(record.get("job_id")), int(record["pid"]), timestamp(record)
        later = [r for r in by_pid[pid] if timestamp(r) >= start and r is not record][:1]
        ends = [
            (timestamp(r), str(r.get("outcome")) if r["event"] == "job.attempt_finished" else "superseded")
            for r in later
            if r["event"] == "job.attempt_started" or r.get("job_id") == job_id
        ]
        ends += [(t, "task ended") for t in task_ends.get(str(record.get("task_id")), []) if t >= start][:1]
        ends += [(k.at, "killed") for k in kills if k.pid == pid and k.at >= start]
        seen = watch.last_seen(pid, after=start)
        if seen is not None:
            ends.append((seen + SAMPLE_INTERVAL, "process ended"))
        end, how = min(ends) if ends else (None, "no end seen")
        found.append(Attempt(job_id, pid, start, end, how))
    return found


def overlapping(found: list[Attempt]) -> list[tuple[Attempt, Attempt]]:
    """Pairs of attempts of one job in different processes that ran at the same time."""
    by_job: dict[str, list[Attempt]] = {}
    for attempt in found:
        by_job.setdefault(attempt.job_id, []).append(attempt)
    pairs: list[tuple[Attempt, Attempt]] = []
    for runs in by_job.values():
        for index, first in enumerate(runs):
            pairs.extend(
                (first, second) for second in runs[index + 1 :] if second.pid != first.pid and first.overlaps(second)
            )
    return pairs


def story(records: list[Record], job_id: str, *, origin: float) -> list[str]:
    """Every log line about one job, oldest first, times relative to origin."""
    lines = []
    for record in sorted((r for r in records if r.get("job_id") == job_id and "timestamp" in r), key=timestamp):
        extra = {k: v for k, v in record.items() if k not in _STORY_HIDES}
        details = " ".join(f"{key}={str(value)[:60]}" for key, value in extra.items())
        lines.append(f"+{timestamp(record) - origin:7.2f}s {record.get('service')}: {record['event']} {details}")
    return lines
