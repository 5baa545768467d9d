"""The scenarios: each one fault, injected while the load runs."""

from __future__ import annotations

from tests.chaos.faults import (
    Fault,
    kill_jobs_service,
    kill_one_replica_each,
    kill_workers,
    restart_redis,
    stop_postgres,
)
from tests.chaos.harness import Context, Scenario

WORKER_KILLS = 20
REDIS_DOWN_SECONDS = 2.0
POSTGRES_DOWN_SECONDS = 10.0


async def worker_kill(context: Context) -> Fault:
    """kill -9 a Celery process (a prefork child mostly, the main process sometimes) 20 times."""
    await context.at(0.05)
    window = 0.85 * context.options.window
    return await kill_workers(context.system, times=WORKER_KILLS, window=window, rng=context.rng)


async def redis_restart(context: Context) -> Fault:
    """Redis killed in the middle of the load, an empty one started on its port 2 s later."""
    await context.at(0.4)
    processing = await context.while_processing()
    return noted(await restart_redis(context.redis, down=REDIS_DOWN_SECONDS), processing)


async def postgres_stop(context: Context) -> Fault:
    """PostgreSQL stopped (immediate) for 10 s during the load."""
    await context.at(0.35)
    processing = await context.while_processing()
    return noted(await stop_postgres(context.postgres, down=POSTGRES_DOWN_SECONDS), processing)


async def jobs_kill(context: Context) -> Fault:
    """kill -9 of the jobs service during the load."""
    await context.at(0.4)
    processing = await context.while_processing()
    return noted(await kill_jobs_service(context.system), processing)


async def replicas_kill(context: Context) -> Fault:
    """Two jobs services and two workers (RUN_REPLICAS); kill -9 one of each mid-load."""
    await context.at(0.4)
    processing = await context.while_processing()
    return noted(await kill_one_replica_each(context.system, context.rng), processing)


def noted(fault: Fault, processing: int) -> Fault:
    """The fault, noting how many jobs were processing when it hit."""
    fault.notes.insert(0, f"{processing} jobs were processing when the fault hit")
    return fault


SCENARIOS: dict[str, Scenario] = {
    "worker-kill": worker_kill,
    "redis-restart": redis_restart,
    "postgres-stop": postgres_stop,
    "jobs-kill": jobs_kill,
    "replicas-kill": replicas_kill,
}
# RUN_REPLICAS of the scenarios that need more than one of a process (Options.replicas overrides).
REPLICAS = {"replicas-kill": "jobs=2,worker=2"}
