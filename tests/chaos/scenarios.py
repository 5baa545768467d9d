"""The scenarios: each one fault, injected while the load runs."""

from __future__ import annotations

import asyncio
import time

from tests.chaos.faults import (
    Fault,
    freeze,
    freeze_for,
    kill_edge,
    kill_jobs_service,
    kill_one_replica_each,
    kill_workers,
    postgres_processes,
    restart_redis,
    stop_postgres,
    thaw,
    worker_replica,
)
from tests.chaos.harness import Context, Scenario
from tests.chaos.remote import create_remote_jobs, wait_processing
from tests.chaos.soak import soak, steady_load
from tests.chaos.system import FAST_SETTINGS
from tests.chaos.webhooks import webhook_blackhole

WORKER_KILLS = 20
REDIS_DOWN_SECONDS = 2.0
POSTGRES_DOWN_SECONDS = 10.0
LEASE = float(FAST_SETTINGS["JOB_LEASE_SECONDS"])
# The long outages: longer than a lease, as a managed PostgreSQL failover is.
OUTAGE_SECONDS = 1.5 * LEASE
PARTITION_SECONDS = 2 * LEASE
# Remote renders run through an outage and end after it.
REMOTE_SECONDS = OUTAGE_SECONDS + LEASE
REMOTE_JOBS = 4
# How long creates queue at the edge before it is killed (envoy-restart).
EDGE_QUEUE_SECONDS = 0.6
# Room for the remote renders beside the load's own jobs.
REMOTE_SETTINGS = {"WORKER_CONCURRENCY": "8"}
# One worker frozen, the other one working on.
TWO_WORKERS = {"RUN_REPLICAS": "worker=2", "WORKER_CONCURRENCY": "4"}


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


async def remote_in_flight(context: Context, label: str) -> str:
    """Starts REMOTE_JOBS slow remote renders and waits until they are processing."""
    jobs = await create_remote_jobs(context.api, REMOTE_JOBS, label=label)
    processing = await wait_processing(context.api, jobs, timeout=30)
    return f"{processing} of {len(jobs)} remote renders ({REMOTE_SECONDS:.0f}s each) were processing"


async def until_ready(context: Context, *, timeout: float = 60) -> None:
    """Until /health/ready answers 200 again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not await context.api.ready():
        await asyncio.sleep(0.2)


async def postgres_long(context: Context) -> Fault:
    """PostgreSQL stopped for 1.5 leases, then frozen (SIGSTOP) for 1.5 leases, remote renders running through each."""
    await context.at(0.1)
    started = time.time()
    notes = [await remote_in_flight(context, "postgres-long-stop")]
    stopped = await stop_postgres(context.postgres, down=OUTAGE_SECONDS)
    await until_ready(context)
    notes.append(await remote_in_flight(context, "postgres-long-freeze"))
    frozen = await freeze_for("PostgreSQL", postgres_processes(context.postgres), down=OUTAGE_SECONDS)
    fault = Fault(f"{stopped.name}; then {frozen.name}", started, frozen.ended, frozen=frozen.frozen)
    fault.notes = [*notes, *stopped.notes, *frozen.notes]
    return fault


async def jobs_freeze(context: Context) -> Fault:
    """Every jobs service frozen (SIGSTOP) for 1.5 leases, remote renders running through it."""
    await context.at(0.2)
    note = await remote_in_flight(context, "jobs-freeze")
    fault = await freeze_for("every jobs service", context.system.processes("services.jobs"), down=OUTAGE_SECONDS)
    fault.notes.insert(0, note)
    return fault


async def worker_partition(context: Context) -> Fault:
    """One of two workers (its service, Celery main and children) frozen for 2 leases, then thawed."""
    await context.at(0.2)
    note = await remote_in_flight(context, "worker-partition")
    fault = await freeze_for("a worker", worker_replica(context.system), down=PARTITION_SECONDS)
    fault.notes.insert(0, note)
    return fault


async def envoy_restart(context: Context) -> Fault:
    """kill -9 of the Envoy edge mid-load, creates in flight through it; `make run` starts it
    again, and clients retry with their Idempotency-Key."""
    await context.at(0.4)
    # The gateway paused for a moment so that creates are in flight at the edge when it dies:
    # the gateway then commits them with nobody left to answer, and their clients try again.
    gateway = freeze(context.system.processes("services.gateway"))
    await asyncio.sleep(EDGE_QUEUE_SECONDS)
    fault = await kill_edge(context.system)
    await asyncio.sleep(0.2)
    thaw(gateway)
    fault.notes.append(f"the gateway was paused {EDGE_QUEUE_SECONDS:g}s before the kill, creates queued at the edge")
    return fault


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
    "worker-kill": Scenario(worker_kill),
    "redis-restart": Scenario(redis_restart),
    "postgres-stop": Scenario(postgres_stop),
    "jobs-kill": Scenario(jobs_kill),
    "postgres-long": Scenario(
        postgres_long, REMOTE_SETTINGS, remote_seconds=REMOTE_SECONDS, no_attempt_burned=True, no_stale_video=True
    ),
    "jobs-freeze": Scenario(
        jobs_freeze, REMOTE_SETTINGS, remote_seconds=REMOTE_SECONDS, no_attempt_burned=True, no_stale_video=True
    ),
    "worker-partition": Scenario(worker_partition, TWO_WORKERS, remote_seconds=REMOTE_SECONDS, no_stale_video=True),
    # The other replica of each serves on: only calls in flight on the killed one may fail (503,
    # tried again by their client); one jobs service alone answers 503 until it is back (20-60).
    "replicas-kill": Scenario(replicas_kill, {"RUN_REPLICAS": "jobs=2,worker=2"}, max_unavailable=8),
    "envoy-restart": Scenario(envoy_restart),
    "webhook-blackhole": Scenario(webhook_blackhole, webhook_blackhole.settings, stage=webhook_blackhole),
    "soak": Scenario(soak, stage=soak, load=steady_load, long=True),
}
