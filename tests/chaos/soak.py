"""The soak scenario (long: not in the default run): a steady load for `--soak-minutes`, no fault.

Every SAMPLE_SECONDS it reads the RSS of every process of `make run` (/proc/<pid>/status, summed
per role, so that a replaced Celery child counts as its role); every QUEUE_SECONDS the messages
waiting in the Celery queues in Redis and the jobs queued or processing in PostgreSQL. It fails when a role's
RSS grew by GROWTH_BOUND or more between the end of the warm-up and the end of the load, or
the backlog was unbounded: over BACKLOG_SECONDS of load at once, or still rising in the last
quarter. A lost job fails it like every scenario.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from services.core.settings import CoreSettings
from services.core.tasks import depth_keys
from tests.chaos import accounting
from tests.chaos.faults import Fault
from tests.chaos.harness import Context, Options, Verdict
from tests.chaos.load import Accepted, JobSpec
from tests.chaos.system import System

SAMPLE_SECONDS = 10.0
QUEUE_SECONDS = 1.0
# The warm-up: this fraction of the load's window, before which RSS may grow freely.
WARM_UP = 0.2
# Growth of a role's RSS after the warm-up that fails the soak (0.10: 10 %).
GROWTH_BOUND = 0.10
# The backlog (Redis queue depth, or jobs queued or processing) may hold this many seconds of load.
BACKLOG_SECONDS = 30.0
# A backlog that rose by more than this many seconds of load over the last quarter is unbounded.
RISE_SECONDS = 10.0
# Samples whose median is a role's RSS after the warm-up, and at the end.
MEDIAN_OF = 3


@dataclass(frozen=True)
class Sample:
    """The memory of `make run`, `at` seconds into the load."""

    at: float
    # kB of resident memory per role, and how many processes the role had.
    rss: dict[str, int]
    processes: dict[str, int]


@dataclass(frozen=True)
class Queue:
    """The backlog, `at` seconds into the load: messages in the Celery queues of Redis, and jobs
    queued or processing in PostgreSQL."""

    at: float
    depth: int
    backlog: int


def steady_load(options: Options) -> Options:
    """The soak's load: soak_rate jobs a second for soak_minutes."""
    jobs = max(1, round(options.soak_rate * options.soak_minutes * 60))
    return replace(options, jobs=jobs, rate=options.soak_rate)


def rss_kb(pid: int) -> int | None:
    """The process's resident set size in kB (VmRSS), or None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for row in status.splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    return None


def memory_by_role(system: System) -> tuple[dict[str, int], dict[str, int]]:
    """kB of RSS summed per role over `make run` and every process under it, and the processes per role."""
    found = [(system.run.process.pid, "services.run")]
    found += [(info.pid, name) for info, name in system.watch.sample()]
    rss: dict[str, int] = {}
    processes: dict[str, int] = {}
    for pid, name in found:
        kb = rss_kb(pid)
        if kb is not None:
            rss[name] = rss.get(name, 0) + kb
            processes[name] = processes.get(name, 0) + 1
    return rss, processes


async def queue_depth(client: aioredis.Redis, keys: list[str]) -> int:
    """Messages waiting in every Celery queue (every priority step's list)."""
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.llen(key)
        lengths = await pipe.execute()
    return sum(int(n) for n in lengths)


async def backlog(database_url: str) -> int:
    """Jobs queued or processing in PostgreSQL."""
    counts = await accounting.status_counts(database_url)
    return counts.get("queued", 0) + counts.get("processing", 0)


@dataclass
class Soak:
    """The scenario (a Stage of tests/chaos/harness.py): the fault is the sampling itself."""

    samples: list[Sample] = field(default_factory=list)
    queue: list[Queue] = field(default_factory=list)
    missed: int = 0

    def open(self) -> None:
        """A new run: no samples yet."""
        self.samples, self.queue, self.missed = [], [], 0

    def close(self) -> None:
        """Nothing to stop."""

    def shape(self, specs: list[JobSpec]) -> None:
        """The common job mix, as it is."""

    async def __call__(self, context: Context) -> Fault:
        """No fault: the sampling, until the load's window has passed."""
        fault = Fault(f"none: a steady load of {context.options.rate:g} jobs/s", time.time())
        prefix = context.system.env.get("CELERY_KEY_PREFIX", "")
        keys = depth_keys(CoreSettings.model_construct(celery_key_prefix=prefix))
        client = aioredis.Redis.from_url(context.redis.url)
        try:
            every = round(SAMPLE_SECONDS / QUEUE_SECONDS)
            tick = 0
            while context.system.alive():
                await asyncio.sleep(max(0.0, context.load_started + tick * QUEUE_SECONDS - time.monotonic()))
                last = tick * QUEUE_SECONDS >= context.options.window
                if tick % every == 0 or last:
                    self.samples.append(
                        Sample(time.monotonic() - context.load_started, *memory_by_role(context.system))
                    )
                await self._read_queue(context, client, keys)
                if last:
                    break
                tick += 1
        finally:
            await client.aclose()
        fault.ended = time.time()
        return fault

    async def _read_queue(self, context: Context, client: aioredis.Redis, keys: list[str]) -> None:
        """One sample of the backlog, or one missed when Redis or PostgreSQL did not answer."""
        at = time.monotonic() - context.load_started
        try:
            depth = await queue_depth(client, keys)
            jobs = await backlog(context.postgres.url)
        except (OSError, RedisError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            self.missed += 1
            return
        self.queue.append(Queue(at, depth, jobs))

    async def verdict(self, context: Context, accepted: list[Accepted]) -> Verdict:
        """The soak's figures and bounds over its samples."""
        verdict = judge(self.samples, self.queue, rate=context.options.rate, window=context.options.window)
        if self.missed:
            verdict.notes.append(f"{self.missed} backlog samples missed (Redis or PostgreSQL did not answer)")
        return verdict


def judge(samples: list[Sample], queue: list[Queue], *, rate: float, window: float) -> Verdict:
    """Per role RSS after the warm-up and at the end, the backlog's peak and trend, held to their bounds."""
    verdict = Verdict()
    warm = [s for s in samples if s.at >= WARM_UP * window]
    steady = [q for q in queue if q.at >= WARM_UP * window]
    if len(warm) < 2 or len(steady) < 2:
        verdict.problems.append(f"{len(warm)} and {len(steady)} samples after the warm-up: too few to judge")
        return verdict
    verdict.notes.append(
        f"soak over {window:.0f}s, warm-up {WARM_UP * window:.0f}s: RSS read {len(samples)} times "
        f"(every {SAMPLE_SECONDS:g}s; per role, the median of {MEDIAN_OF}), the backlog {len(queue)} times"
    )
    for name in sorted(warm[0].rss):
        verdict.notes.append(_role_line(name, warm, verdict.problems))
    verdict.notes.extend(
        _backlog_lines(
            steady,
            last_quarter=0.75 * window,
            bound=rate * BACKLOG_SECONDS,
            rise=rate * RISE_SECONDS,
            problems=verdict.problems,
        )
    )
    return verdict


def _role_line(name: str, warm: list[Sample], problems: list[str]) -> str:
    """The role's RSS after the warm-up and at the end; a growth at or over the bound is a problem."""
    start = statistics.median(s.rss.get(name, 0) for s in warm[:MEDIAN_OF])
    end = statistics.median(s.rss.get(name, 0) for s in warm[-MEDIAN_OF:])
    growth = (end - start) / start if start else 0.0
    counts = f"{warm[0].processes.get(name, 0)}->{warm[-1].processes.get(name, 0)} processes"
    if growth >= GROWTH_BOUND:
        problems.append(f"RSS of {name} grew {growth:+.1%} after the warm-up (bound {GROWTH_BOUND:.0%})")
    return (
        f"rss {name}: {start / 1024:.1f} MiB after warm-up, {end / 1024:.1f} MiB at the end, {growth:+.1%} ({counts})"
    )


def _backlog_lines(
    steady: list[Queue], *, last_quarter: float, bound: float, rise: float, problems: list[str]
) -> list[str]:
    """The peaks of the queue depth and of the backlog, and the backlog's rise over the last quarter."""
    deepest = max(steady, key=lambda q: q.depth)
    fullest = max(steady, key=lambda q: q.backlog)
    depth, jobs = deepest.depth, fullest.backlog
    last = [q for q in steady if q.at >= last_quarter]
    last = last if len(last) >= 2 else steady[-2:]
    rose = slope([(s.at, float(s.backlog)) for s in last]) * (last[-1].at - last[0].at)
    if depth > bound:
        problems.append(f"queue depth reached {depth} messages (bound {bound:.0f})")
    if jobs > bound:
        problems.append(f"{jobs} jobs were queued or processing at once (bound {bound:.0f})")
    if rose > rise:
        problems.append(f"the backlog still rose by {rose:.0f} jobs over the last quarter (bound {rise:.0f})")
    return [
        f"max queue depth {depth} messages (+{deepest.at:.0f}s), max jobs queued or processing {jobs} "
        f"(+{fullest.at:.0f}s; bound {bound:.0f} each); "
        f"backlog trend over the last quarter {rose:+.1f} jobs (bound +{rise:.0f})"
    ]


def slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of y over x; 0 when x does not vary."""
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return 0.0 if spread == 0 else sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


soak = Soak()
