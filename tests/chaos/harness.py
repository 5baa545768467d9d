"""One scenario from start to end: own servers, `make run`, load, a fault, recovery, accounting."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from tests.chaos import accounting
from tests.chaos.faults import Fault
from tests.chaos.load import Api, create_jobs, job_mix, probe
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
    # RUN_REPLICAS of `make run` (`jobs=2,worker=2`); empty: one of each.
    replicas: str = ""

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

    async def while_processing(self, *, timeout: float = 5.0) -> int:
        """Waits (at most timeout) until a job is processing, so that the fault hits work in flight;
        answers how many were."""
        deadline = time.monotonic() + timeout
        while True:
            processing = (await accounting.status_counts(self.postgres.url)).get("processing", 0)
            if processing or time.monotonic() > deadline:
                return processing
            await asyncio.sleep(0.05)


Scenario = Callable[[Context], Awaitable[Fault]]


def run_scenario(name: str, scenario: Scenario, options: Options) -> Outcome:
    """Runs one scenario on its own servers; nothing of it is left running or on disk after."""
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=f"vg-chaos-{name}-"))
    postgres, redis = Postgres(root), Redis(root)
    try:
        postgres.create()
        redis.start()
        env = system_env(database_url=postgres.url, redis_url=redis.url, workdir=root, replicas=options.replicas)
        system = System({**env, **dict(options.settings)}, root)
        try:
            system.wait_ready()
            observed = asyncio.run(_drive(system, postgres, redis, scenario, options))
        finally:
            code = system.stop()
        outcome = outcome_of(name, system, observed, media=root / "media", began=began, exit_code=code)
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
