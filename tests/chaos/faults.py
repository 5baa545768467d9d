"""The faults: kill -9 or SIGSTOP of processes of `make run`, Redis lost, PostgreSQL stopped or frozen."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.chaos.servers import Postgres, Redis
from tests.chaos.system import ProcessInfo, System, process_tree, read_process

# One kill in this many aims at the Celery main process rather than a prefork child.
MAIN_KILL_ODDS = 5


@dataclass(frozen=True)
class Kill:
    """A process killed with SIGKILL, and when (epoch seconds)."""

    pid: int
    role: str
    at: float


@dataclass
class Fault:
    """What was done to the system, from when to when (epoch seconds)."""

    name: str
    started: float
    ended: float = 0.0
    kills: list[Kill] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Processes frozen (SIGSTOP) during the fault and thawed after.
    frozen: list[int] = field(default_factory=list)


def kill(info: ProcessInfo, role: str) -> Kill:
    """SIGKILL the process now."""
    os.kill(info.pid, signal.SIGKILL)
    return Kill(info.pid, role, time.time())


async def kill_workers(system: System, *, times: int, window: float, rng: random.Random) -> Fault:
    """kill -9 a Celery process `times` times spread over window seconds: children mostly."""
    fault = Fault(f"kill -9 of a worker process x{times}", time.time())
    pause = window / times
    missed: list[str] = []
    while len(fault.kills) < times and system.alive() and len(missed) < times:
        await asyncio.sleep(pause)
        children, main = system.processes("celery-child"), system.processes("celery-main")
        # The odds hold whatever is alive: a main process still starting (no children yet) is
        # not killed for want of a child, which would only test the supervisor's restart limit.
        aim_main = rng.randrange(MAIN_KILL_ODDS) == 0
        targets = main if aim_main else children
        if not targets:
            missed.append(f"+{time.time() - fault.started:.1f}s")
            continue
        fault.kills.append(kill(rng.choice(targets), "celery-main" if aim_main else "celery-child"))
    if missed:
        fault.notes.append(f"no Celery process was there to kill at {', '.join(missed)}")
    roles = Counter(k.role for k in fault.kills)
    fault.notes.append(f"killed {dict(roles)}")
    fault.ended = fault.kills[-1].at if fault.kills else time.time()
    return fault


async def restart_redis(redis: Redis, *, down: float) -> Fault:
    """SIGKILL Redis and start an empty one on the same port after `down` seconds."""
    fault = Fault(f"Redis killed, empty again after {down:.0f}s", time.time())
    redis.kill()
    await asyncio.sleep(down)
    await asyncio.to_thread(redis.start)
    fault.ended = time.time()
    return fault


async def stop_postgres(postgres: Postgres, *, down: float, mode: str = "immediate") -> Fault:
    """pg_ctl stop -m mode, `down` seconds without PostgreSQL, then start it again."""
    fault = Fault(f"PostgreSQL stopped ({mode}) for {down:.0f}s", time.time())
    await asyncio.to_thread(postgres.stop, mode)
    await asyncio.sleep(down)
    await asyncio.to_thread(postgres.start)
    fault.ended = time.time()
    return fault


async def kill_jobs_service(system: System) -> Fault:
    """kill -9 the jobs service."""
    fault = Fault("kill -9 of the jobs service", time.time())
    for info in system.processes("services.jobs"):
        fault.kills.append(kill(info, "services.jobs"))
    if not fault.kills:
        fault.notes.append("no jobs service process to kill")
    fault.ended = time.time()
    return fault


def freeze(infos: list[ProcessInfo]) -> list[ProcessInfo]:
    """SIGSTOP each process (the ones gone already are left out); answers the frozen ones."""
    frozen = []
    for info in infos:
        try:
            os.kill(info.pid, signal.SIGSTOP)
        except ProcessLookupError:
            continue
        frozen.append(info)
    return frozen


def thaw(infos: list[ProcessInfo]) -> None:
    """SIGCONT each process that is still the one frozen."""
    for info in infos:
        now = read_process(info.pid)
        if now is not None and now.started == info.started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGCONT)


async def freeze_for(name: str, infos: list[ProcessInfo], *, down: float) -> Fault:
    """SIGSTOP these processes for `down` seconds, then SIGCONT: a pause, a partition, a VM stall."""
    fault = Fault(f"{name} frozen (SIGSTOP) for {down:.0f}s", time.time())
    frozen = freeze(infos)
    try:
        await asyncio.sleep(down)
    finally:
        thaw(frozen)
    fault.ended = time.time()
    fault.frozen = sorted(info.pid for info in frozen)
    fault.notes.append(f"froze {len(frozen)} processes")
    return fault


def postgres_processes(postgres: Postgres) -> list[ProcessInfo]:
    """The postmaster and every backend and auxiliary process under it."""
    pid = int((postgres.pgdata / "postmaster.pid").read_text().split()[0])
    main = read_process(pid)
    return [] if main is None else [main, *process_tree(pid)]


def worker_replica(system: System, index: int = 0) -> list[ProcessInfo]:
    """One worker service (`python -m services.worker`, the index-th by pid) and its Celery tree."""
    workers = sorted(system.processes("services.worker"), key=lambda info: info.pid)
    if not workers:
        return []
    chosen = workers[min(index, len(workers) - 1)]
    return [chosen, *process_tree(chosen.pid)]


async def kill_edge(system: System) -> Fault:
    """kill -9 of Envoy; `make run` starts it again."""
    fault = Fault("kill -9 of the Envoy edge", time.time())
    for info in system.processes("envoy"):
        fault.kills.append(kill(info, "envoy"))
    if not fault.kills:
        fault.notes.append("no Envoy process to kill")
    fault.ended = time.time()
    return fault


async def kill_one_replica_each(system: System, rng: random.Random) -> Fault:
    """kill -9 one of several jobs services, and one worker replica's whole process tree (its
    supervisor, Celery main process and prefork children, as when its machine dies)."""
    fault = Fault("kill -9 of one jobs replica and one worker replica's tree", time.time())
    jobs, workers = system.processes("services.jobs"), system.processes("services.worker")
    fault.notes.append(f"{len(jobs)} jobs services and {len(workers)} workers were running")
    if jobs:
        fault.kills.append(kill(rng.choice(jobs), "services.jobs"))
    if workers:
        worker = rng.choice(workers)
        tree = process_tree(worker.pid)
        fault.kills.append(kill(worker, "services.worker"))
        fault.kills.extend(kill(info, "worker-tree") for info in tree)
    fault.ended = time.time()
    return fault
