"""The baselines of the same run: PostgreSQL's own insert rate, and a minimal FastAPI endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from bench.baseline_app import INSERT, QUEUE, TABLE
from tests.support.processes import ROOT, clean_env, free_port

CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id varchar(32) PRIMARY KEY,
    user_id varchar(128) NOT NULL,
    status varchar(16) NOT NULL DEFAULT 'queued',
    prompt text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    retry_count integer NOT NULL DEFAULT 0,
    max_retries integer NOT NULL DEFAULT 3,
    queue varchar(32) NOT NULL DEFAULT 'default',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS {TABLE}_user_status ON {TABLE} (user_id, status, created_at DESC);
"""


async def prepare(database_url: str) -> None:
    """The baselines' table, jobs' main columns and its user/status index."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(CREATE_TABLE)
    finally:
        await connection.close()


async def insert_rate(database_url: str, *, connections: int, seconds: float) -> float:
    """Rows a second that `connections` connections insert, one autocommitted row per statement."""
    pool = await asyncpg.create_pool(database_url, min_size=connections, max_size=connections)
    metadata = json.dumps({"durationSeconds": 1, "width": 64, "height": 64, "fps": 4})
    deadline = time.monotonic() + seconds
    inserted = 0

    async def inserter(slot: int) -> None:
        nonlocal inserted
        async with pool.acquire() as connection:
            while time.monotonic() < deadline:
                await connection.execute(INSERT, uuid.uuid4().hex, f"pg-user-{slot}", "bench row", metadata)
                inserted += 1

    began = time.monotonic()
    try:
        await asyncio.gather(*(inserter(slot) for slot in range(connections)))
    finally:
        await pool.close()
    return inserted / (time.monotonic() - began)


async def handoff_latencies(redis_url: str, *, messages: int = 200) -> list[float]:
    """Baseline (c): the broker's own hand-off, in ms. One client LPUSHes a message of a Celery
    message's size while another waits on BRPOP, as a worker does; the time from the push to the
    pop, message after message on an idle Redis."""
    pusher, popper = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    key = f"bench-handoff-{uuid.uuid4().hex}"
    payload = b"x" * 1500
    latencies: list[float] = []
    try:
        await popper.ping()
        for _ in range(messages):
            popped = asyncio.ensure_future(popper.brpop([key], timeout=5))
            await asyncio.sleep(0.002)  # the popper is blocked in BRPOP before the push
            began = time.perf_counter()
            await pusher.lpush(key, payload)
            await popped
            latencies.append(1000 * (time.perf_counter() - began))
    finally:
        await pusher.delete(key)
        await pusher.aclose()
        await popper.aclose()
    return latencies


@dataclass(frozen=True)
class BaselineServer:
    """Baseline (b) running: where it answers, and its one process (whose CPU is read)."""

    url: str
    pid: int


@contextlib.contextmanager
def baseline_server(*, database_url: str, redis_url: str, workdir: Path) -> Iterator[BaselineServer]:
    """The baseline app under uvicorn (uvloop when installed) on a free port."""
    port = free_port()
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    command = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(port)]
    command += ["--host", "127.0.0.1", "--loop", loop, "--no-access-log", "--log-level", "warning"]
    env = clean_env(BENCH_DATABASE_URL=database_url, BENCH_REDIS_URL=redis_url, PYTHONPATH=str(ROOT))
    log = (workdir / "baseline.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_listening(f"{url}/docs", process)
        yield BaselineServer(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_listening(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Until a GET of url answers; fails if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the baseline server exited with {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    raise TimeoutError("the baseline server did not answer")


__all__ = ["QUEUE", "BaselineServer", "baseline_server", "handoff_latencies", "insert_rate", "prepare"]
