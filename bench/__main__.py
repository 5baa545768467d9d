"""`make bench`: own PostgreSQL and Redis, the baselines, then `make run` under load through the edge:
dispatch idle and at 200 creates/s, creation (REST and gRPC), reads and lists, then lists over
1,000,000 jobs. It prints the report with issue 19's targets, writes bench/results/latest.json
(the run before kept as previous.json, and compared with) and the chart docs/bench.svg."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import procs
from bench.baseline import baseline_server, handoff_latencies, insert_rate, prepare
from bench.client import Connection
from bench.figures import Figures
from bench.grpc_load import run_grpc_creates
from bench.load import LevelResult, Request, create_request, run_level, run_paced
from bench.rendering import render_cpu_ms
from bench.report import publish
from bench.results import RESULTS_DIR, ROOT
from bench.seed import HEAVY_USER, ROWS, list_path, seed
from bench.timings import wait_and_read
from bench.worker_rpcs import per_job, worker_calls
from services.topology import PORT_SETTINGS
from services.worker.settings import WorkerSettings
from tests.chaos.servers import Postgres, Redis
from tests.chaos.system import System, process_tree, system_env
from tests.support.processes import free_port

PG_CONNECTIONS = 4
USERS = 1000
MAX_REQUESTS = 200_000
# Dispatch with the worker idle: one create every quarter second.
IDLE_RATE = 4.0
# The open-loop rate of the "under load" figures (issue 9: p99 create and dispatch at 200/s).
LOADED_RATE = 200.0
# How long the bench waits for the worker to finish the jobs of a dispatch level.
DRAIN_TIMEOUT = 180.0
# The deepest page the API serves (JOBS_LIST_MAX_SKIP's default).
DEEPEST_SKIP = 100_000
CHART = ROOT / "docs" / "bench.svg"
# The processes whose CPU a level reads, asked at its start and at its end.
Pids = Callable[[], dict[int, str]]
WORKER_CONCURRENCY: int = WorkerSettings.model_fields["worker_concurrency"].default


def say(text: str) -> None:
    """A progress line on stderr, so that stdout is the report alone."""
    sys.stderr.write(f"bench: {text}\n")
    sys.stderr.flush()


def get_request(ids: list[str]) -> Request:
    """GET /api/v1/jobs/{id} over the jobs created before."""

    def build(n: int) -> tuple[str, str, dict[str, Any] | None]:
        return "GET", f"/api/v1/jobs/{ids[n % len(ids)]}", None

    return build


def fixed_get(path: str) -> Request:
    """GET of one path, every time."""

    def build(n: int) -> tuple[str, str, dict[str, Any] | None]:
        return "GET", path, None

    return build


def list_request(n: int) -> tuple[str, str, dict[str, Any] | None]:
    """GET /api/v1/jobs?userId=&status= over the bench's users, queued and completed alternately."""
    status = "queued" if n % 2 else "completed"
    return "GET", f"/api/v1/jobs?userId=bench-user-{n % USERS}&status={status}&skip=0&take=20", None


def postgres_pids(postgres: Postgres) -> list[int]:
    """The postmaster and its backends."""
    postmaster = int((postgres.pgdata / "postmaster.pid").read_text().split()[0])
    return [postmaster, *(info.pid for info in process_tree(postmaster))]


async def measure_baselines(figures: Figures, postgres: Postgres, redis: Redis, root: Path, seconds: float) -> None:
    """(a) PostgreSQL's insert rate and (b) the minimal endpoint at concurrency 64."""
    await prepare(postgres.url)
    say(f"baseline (a): PostgreSQL inserts, {PG_CONNECTIONS} connections, {seconds:.0f}s")
    figures.pg_connections = PG_CONNECTIONS
    figures.pg_insert_rate = await insert_rate(postgres.url, connections=PG_CONNECTIONS, seconds=seconds)
    say("baseline (c): the broker's hand-off, LPUSH to a waiting BRPOP, 200 messages")
    figures.handoff_ms = await handoff_latencies(redis.url)
    with baseline_server(database_url=postgres.url, redis_url=redis.url, workdir=root) as server:
        say(f"baseline (b): FastAPI endpoint at {server.url}, c=64, {seconds:.0f}s")
        request = create_request("baseline", USERS)
        await run_level(server.url, request, name="warm-up", concurrency=16, seconds=2, max_requests=500)
        before = procs.cpu_seconds(server.pid)
        figures.baseline = await run_level(
            server.url, request, name="(b) create", concurrency=64, seconds=seconds, max_requests=MAX_REQUESTS
        )
        creates = max(len(figures.baseline.latencies), 1)
        figures.baseline_cpu_ms = 1000 * (procs.cpu_seconds(server.pid) - before) / creates


def system_pids(system: System, postgres: Postgres, redis_pid: int) -> dict[int, str]:
    """The system's processes and its servers', without the load generator."""
    return {pid: name for pid, name in watched_pids(system, postgres, redis_pid).items() if name != "load generator"}


def watched_pids(system: System, postgres: Postgres | None, redis_pid: int | None) -> dict[int, str]:
    """Every process whose CPU the bench reports, by pid: the system's, its servers', its own."""
    pids = {pid: f"{role} [{procs.SERVICE_OF[role]}]" for pid, role in procs.roles(system.run.process.pid).items()}
    if postgres is not None:
        pids |= dict.fromkeys(postgres_pids(postgres), "postgres")
    if redis_pid is not None:
        pids[redis_pid] = "redis"
    return pids | {os.getpid(): "load generator"}


async def cpu_level(
    figures: Figures, pids: Pids, edge: str, request: Request, *, name: str, concurrency: int, seconds: float
) -> LevelResult:
    """One closed-loop level through the edge, kept; at c=64 with the CPU of each process meanwhile."""
    say(f"{name} through the edge, c={concurrency}, {seconds:.0f}s")
    window = procs.CpuWindow(pids)
    level = await run_level(
        edge, request, name=name, concurrency=concurrency, seconds=seconds, max_requests=MAX_REQUESTS
    )
    if concurrency == 64:
        figures.cpu_by_level[f"{name} c=64"] = window.percent()
    figures.levels.append(level)
    return level


async def measure_system(figures: Figures, system: System, postgres: Postgres, redis_pid: int, seconds: float) -> None:
    """Creation at 200/s, then at 1, 16 and 64; reads and lists at 1 and 64; CPU per process at c=64."""
    edge = system.edge_url
    await run_level(edge, create_request("warm-up", USERS), name="warm-up", concurrency=16, seconds=2, max_requests=500)
    say(f"creation at {LOADED_RATE:.0f} creates/s (open loop), worker paused, {seconds:.0f}s")
    figures.paced_api = await run_paced(
        edge,
        create_request("paced-api", USERS),
        name=f"create at {LOADED_RATE:.0f}/s",
        rate=LOADED_RATE,
        seconds=seconds,
    )
    ensure_alive(system)
    ids: list[str] = list(figures.paced_api.ids)
    pids = functools.partial(watched_pids, system, postgres, redis_pid)
    for concurrency in (1, 16, 64):
        request = create_request(f"c{concurrency}", USERS)
        level = await cpu_level(figures, pids, edge, request, name="create", concurrency=concurrency, seconds=seconds)
        ids += level.ids
        ensure_alive(system)
    for name, request in (("get /jobs/{id}", get_request(ids)), ("list ?userId=&status=", list_request)):
        for concurrency in (1, 64):
            await cpu_level(figures, pids, edge, request, name=name, concurrency=concurrency, seconds=seconds)
            ensure_alive(system)


async def measure_grpc(figures: Figures, system: System, postgres: Postgres, redis_pid: int, seconds: float) -> None:
    """CreateJob over gRPC through the edge at c=64, beside the REST level, and the CPU meanwhile."""
    target, key = system.edge_url.removeprefix("http://"), system.env["API_KEY"]
    say(f"CreateJob over gRPC through the edge, c=64, {seconds:.0f}s")
    await run_grpc_creates(target, api_key=key, users=USERS, concurrency=16, seconds=2, max_requests=500)
    window = procs.CpuWindow(functools.partial(watched_pids, system, postgres, redis_pid))
    figures.grpc_create = await run_grpc_creates(
        target, api_key=key, users=USERS, concurrency=64, seconds=seconds, max_requests=MAX_REQUESTS
    )
    figures.cpu_by_level["create (gRPC) c=64"] = window.percent()
    ensure_alive(system)


def metrics_urls(system: System) -> list[str]:
    """The /metrics of the services the worker calls (jobs and providers)."""
    return [f"http://127.0.0.1:{system.env[name]}/metrics" for name in ("JOBS_METRICS_PORT", "PROVIDERS_METRICS_PORT")]


async def measure_dispatch(
    figures: Figures, system: System, postgres: Postgres, redis_pid: int, seconds: float
) -> None:
    """Dispatch and worker overhead with the worker idle, then creation and dispatch at 200/s."""
    edge = system.edge_url
    say(f"dispatch, worker idle: {IDLE_RATE:.0f} creates/s for {seconds:.0f}s")
    idle = await run_paced(edge, create_request("idle", USERS), name="create, idle", rate=IDLE_RATE, seconds=seconds)
    figures.timings.append(await wait_and_read(postgres.url, "idle", idle.ids, timeout=DRAIN_TIMEOUT))
    ensure_alive(system)
    say(f"creation and dispatch at {LOADED_RATE:.0f} creates/s (open loop) for {seconds:.0f}s")
    calls = await worker_calls(metrics_urls(system))
    window = procs.CpuWindow(functools.partial(system_pids, system, postgres, redis_pid))
    loaded = await run_paced(
        edge, create_request("paced", USERS), name=f"create at {LOADED_RATE:.0f}/s", rate=LOADED_RATE, seconds=seconds
    )
    figures.paced = loaded
    say(f"waiting for the worker to finish the {len(loaded.ids)} jobs (at most {DRAIN_TIMEOUT:.0f}s)")
    times = await wait_and_read(postgres.url, f"{LOADED_RATE:.0f}/s", loaded.ids, timeout=DRAIN_TIMEOUT)
    figures.timings.append(times)
    finished = max(times.finished, 1)
    # The whole life of a job, creation to completion, in ms of CPU by process.
    figures.cpu_per_job = {name: 1000 * used / finished for name, used in window.seconds().items()}
    figures.rpcs_per_job = per_job(calls, await worker_calls(metrics_urls(system)), finished)
    ensure_alive(system)


async def deepest_cursor(edge_url: str) -> str:
    """The nextCursor of the heavy user's page that ends DEEPEST_SKIP jobs deep (a skip page
    answers the cursor that continues it), so that the same deepest page is timed by cursor."""
    connection = Connection(edge_url)
    try:
        status, body = await connection.request("GET", list_path(HEAVY_USER, skip=DEEPEST_SKIP - 20), None)
    finally:
        await connection.close()
    cursor = json.loads(body).get("nextCursor") if status == 200 else None
    if not isinstance(cursor, str):
        raise RuntimeError(f"the page before the deepest answered {status} without a nextCursor: {body[:200]!r}")
    return cursor


async def measure_big_lists(figures: Figures, system: System, database_url: str, seconds: float) -> None:
    """Lists over a table of ROWS jobs: the heavy user's first and deepest page (by skip and by
    cursor), a usual user's first and last page, at concurrency 1."""
    say(f"seeding {ROWS:,} jobs into the jobs table")
    figures.seed_seconds = await seed(database_url)
    queries = {
        f"{HEAVY_USER} first page": list_path(HEAVY_USER, skip=0),
        f"{HEAVY_USER} skip={DEEPEST_SKIP:,}": list_path(HEAVY_USER, skip=DEEPEST_SKIP),
        f"{HEAVY_USER} cursor at {DEEPEST_SKIP:,}": list_path(HEAVY_USER, cursor=await deepest_cursor(system.edge_url)),
        "usual user first page": list_path("bench-seed-7", skip=0),
        "usual user last page": list_path("bench-seed-7", skip=880),
    }
    for name, path in queries.items():
        say(f"list over {ROWS:,} jobs: {name}, c=1, {seconds:.0f}s")
        level = await run_level(
            system.edge_url,
            fixed_get(path),
            name=name,
            concurrency=1,
            seconds=seconds,
            max_requests=MAX_REQUESTS,
        )
        figures.big_lists.append(level)
        ensure_alive(system)


def ensure_alive(system: System) -> None:
    """Stops the bench when `make run` has exited: no figure of a dead system is a figure."""
    if not system.alive():
        raise RuntimeError("`make run` exited during the load")


def distinct_ports(env: dict[str, str], postgres: Postgres, redis: Redis) -> dict[str, str]:
    """env with every port distinct: free_port() may hand out one port twice, as the kernel reuses it."""
    taken = {str(postgres.port), str(redis.port)}
    for setting in PORT_SETTINGS:
        while env[setting.upper()] in taken:
            env[setting.upper()] = str(free_port())
        taken.add(env[setting.upper()])
    return env


def bench_env(env: dict[str, str]) -> dict[str, str]:
    """`make chaos`'s settings but the worker's default concurrency (issue 19 holds each Celery
    child to its PSS at the default), and an admin key for the gRPC clients to present."""
    env = {name: value for name, value in env.items() if name != "WORKER_CONCURRENCY"}
    return env | {"API_KEY": secrets.token_hex(24)}


def run(seconds: float) -> Figures:
    """The whole bench; nothing it started is left running or on disk after, Ctrl-C included."""
    figures = Figures(load_generator="one asyncio process, one keep-alive HTTP/1.1 connection per sender")
    root = Path(tempfile.mkdtemp(prefix="vg-bench-"))
    postgres, redis = Postgres(root), Redis(root)
    system: System | None = None
    try:
        say("the rendering's own CPU: the built-in provider renders the tiny video in this process")
        figures.render_cpu_ms = render_cpu_ms()
        say(f"own PostgreSQL on :{postgres.port}, Redis on :{redis.port}")
        postgres.create()
        redis.start()
        asyncio.run(measure_baselines(figures, postgres, redis, root, seconds))
        env = bench_env(
            distinct_ports(system_env(database_url=postgres.url, redis_url=redis.url, workdir=root), postgres, redis)
        )
        figures.worker_concurrency = int(env.get("WORKER_CONCURRENCY", WORKER_CONCURRENCY))
        say("starting services.run")
        system = System(env, root)
        system.wait_ready()
        time.sleep(2)
        figures.memory_idle = procs.memory(system.run.process.pid)
        assert redis._process is not None
        asyncio.run(measure_dispatch(figures, system, postgres, redis._process.pid, seconds))
        # The API's own figures: with workers on other machines the jobs created are not rendered
        # here; the whole life of a job is the dispatch levels' "CPU per job".
        say("pausing the worker's processes (SIGSTOP) for the API levels; continued at the end")
        with procs.paused_worker(system.run.process.pid):
            asyncio.run(measure_system(figures, system, postgres, redis._process.pid, seconds))
            asyncio.run(measure_grpc(figures, system, postgres, redis._process.pid, seconds))
            figures.memory_after = procs.memory(system.run.process.pid)
            asyncio.run(measure_big_lists(figures, system, postgres.url, seconds))
    finally:
        say("stopping everything")
        if system is not None:
            with contextlib.suppress(Exception):
                system.stop()
        redis.close()
        postgres.close()
        shutil.rmtree(root, ignore_errors=True)
    return figures


def main(argv: list[str] | None = None) -> None:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="the length of each level of load")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where latest.json and previous.json go")
    parser.add_argument("--chart", type=Path, default=CHART, help="where the SVG chart goes")
    args = parser.parse_args(argv)
    # Ctrl-C and SIGTERM stop the bench, even when started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        figures = run(args.seconds)
    except KeyboardInterrupt:
        say("interrupted; everything started was stopped")
        raise SystemExit(130) from None
    sys.stdout.write(publish(figures, seconds=args.seconds, results_dir=args.results, chart=args.chart))


if __name__ == "__main__":
    main()
