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
from typing import Protocol

import asyncpg
import httpx

from tests.chaos import accounting
from tests.chaos.faults import Fault
from tests.chaos.load import Accepted, Api, JobSpec, create_jobs, job_mix, probe
from tests.chaos.remote import KEY, KEY_ENV, SlowRunway, registry_file
from tests.chaos.report import Observed, Outcome, outcome_of
from tests.chaos.servers import Postgres, Redis
from tests.chaos.system import System, system_env


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
    # Settings of `make run` over FAST_SETTINGS, e.g. to see a scenario fail without a mechanism.
    settings: tuple[tuple[str, str], ...] = ()
    # RUN_REPLICAS of `make run` for every scenario (`jobs=2,worker=2`); empty: each scenario's own.
    replicas: str = ""
    # The soak's steady load: jobs at soak_rate a second for soak_minutes (--jobs and --rate do not apply).
    soak_minutes: float = 20.0
    soak_rate: float = 4.0

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
    api: Api
    # The slow remote provider of scenarios that want long renders, else None.
    remote: SlowRunway | None = None

    async def at(self, fraction: float) -> None:
        """Sleeps until this fraction of the load's window has passed."""
        await asyncio.sleep(max(0.0, self.load_started + fraction * self.options.window - time.monotonic()))

    async def while_processing(self, *, timeout: float = 5.0) -> int:
        """Waits (at most timeout) until a job is processing, so that the fault hits work in flight;
        answers how many were."""
        deadline = time.monotonic() + timeout
        while True:
            processing = (await accounting.status_counts(self.postgres.url)).get("processing", 0)
            if processing or time.monotonic() > deadline:
                return processing
            await asyncio.sleep(0.05)


Inject = Callable[[Context], Awaitable[Fault]]


@dataclass
class Verdict:
    """A staged scenario's own checks: lines for the report, and what failed."""

    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Stage(Protocol):
    """What a scenario may bring beyond its fault: servers of its own (opened before `make run`
    starts, closed after it stops), the jobs' bodies, and checks made once the jobs are final,
    before `make run` stops (tests/chaos/webhooks.py)."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def shape(self, specs: list[JobSpec]) -> None: ...

    async def verdict(self, context: Context, accepted: list[Accepted]) -> Verdict: ...


@dataclass(frozen=True)
class Scenario:
    """A fault, the settings it runs under, and what it holds the system to beyond the common figures."""

    fault: Inject
    settings: dict[str, str] = field(default_factory=dict)
    # Seconds each render of the slow remote provider takes; 0: no remote provider.
    remote_seconds: float = 0.0
    # The fault must cost no job an attempt (retryCount 0 everywhere, no render paid twice).
    no_attempt_burned: bool = False
    # No video file of an attempt that did not complete may remain.
    no_stale_video: bool = False
    stage: Stage | None = None
    # At most this many 503s (the calls in flight when a replica died), when set.
    max_unavailable: int | None = None
    # Seconds from the end of the fault until the edge is ready and a new job completes: two of the
    # chaos settings' leases (JOB_LEASE_SECONDS=10), several times the slowest recovery measured.
    recover_within: float = 20.0
    # The scenario's own load from the shared options (the soak's steady rate), else the options as given.
    load: Callable[[Options], Options] | None = None
    # A long scenario: left out of the default run (CI); `--all` or `-s NAME` runs it (`make chaos-all`).
    long: bool = False

    def options_for(self, options: Options) -> Options:
        """The options this scenario runs under."""
        return options if self.load is None else self.load(options)

    @property
    def doc(self) -> str:
        """The first line of the fault's docstring."""
        return (self.fault.__doc__ or "").strip().splitlines()[0]


def run_scenario(name: str, scenario: Scenario, options: Options) -> Outcome:
    """Runs one scenario on its own servers; nothing of it is left running or on disk after."""
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"vg-chaos-{name}-"))
    postgres, redis = Postgres(root), Redis(root)
    remote = SlowRunway(render_seconds=scenario.remote_seconds).start() if scenario.remote_seconds else None
    try:
        postgres.create()
        redis.start()
        if scenario.stage is not None:
            scenario.stage.open()
        env = system_env(database_url=postgres.url, redis_url=redis.url, workdir=root, replicas=options.replicas)
        if remote is not None:
            env.update(PROVIDERS_CONFIG=str(registry_file(remote, root)), **{KEY_ENV: KEY})
        settings = {**scenario.settings, **({"RUN_REPLICAS": options.replicas} if options.replicas else {})}
        system = System({**env, **settings, **dict(options.settings)}, root)
        try:
            system.wait_ready()
            observed, verdict = asyncio.run(_drive(system, postgres, redis, scenario, options, remote, label=name))
        finally:
            code = system.stop()
        outcome = outcome_of(name, system, observed, media=root / "media", began=began, exit_code=code)
        outcome.require(
            no_attempt_burned=scenario.no_attempt_burned,
            no_stale_video=scenario.no_stale_video,
            max_unavailable=scenario.max_unavailable,
            recover_within=scenario.recover_within,
        )
        outcome.notes.extend([*verdict.notes, *(f"check failed: {problem}" for problem in verdict.problems)])
        outcome.broken.extend(verdict.problems)
        if options.logs is not None:
            options.logs.mkdir(parents=True, exist_ok=True)
            (options.logs / f"{name}.log").write_text(system.run.output())
        return outcome
    finally:
        if scenario.stage is not None:
            scenario.stage.close()
        if remote is not None:
            remote.stop()
        redis.close()
        postgres.close()
        shutil.rmtree(root, ignore_errors=True)


async def _drive(
    system: System,
    postgres: Postgres,
    redis: Redis,
    scenario: Scenario,
    options: Options,
    remote: SlowRunway | None,
    *,
    label: str,
) -> tuple[Observed, Verdict]:
    rng = random.Random(options.seed)
    async with httpx.AsyncClient(base_url=system.edge_url, timeout=30) as client:
        api = Api(client, system.alive)
        specs = job_mix(options.jobs, label=label.replace("-", "_"), rng=rng)
        if scenario.stage is not None:
            scenario.stage.shape(specs)
        context = Context(options, system, postgres, redis, rng, time.monotonic(), api, remote)
        load = asyncio.create_task(
            create_jobs(api, specs, rate=options.rate, senders=options.senders, give_up_after=options.settle)
        )
        fault = await scenario.fault(context)
        ready_at, probed_at, probe_note = await probe(api, timeout=options.settle)
        await load
        last = max([fault.ended, *(a.at for a in api.accepted)])
        deadline = time.monotonic() + max(0.0, last + options.settle - time.time())
        ids = [a.job_id for a in api.accepted]
        all_final_at, rows = await accounting.wait_final(postgres.url, ids, deadline=deadline, alive=system.alive)
        verdict = Verdict() if scenario.stage is None else await scenario.stage.verdict(context, api.accepted)
        try:
            table = await accounting.status_counts(postgres.url)
            created_twice = await accounting.created_twice(postgres.url)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            table, created_twice = {}, []
    note = "" if system.alive() else "`make run` had exited"
    observed = Observed(
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
        created_twice=created_twice,
        paid=remote.paid() if remote is not None else None,
    )
    return observed, verdict
