"""Baseline (b): one uvicorn process, FastAPI + asyncpg, that inserts a row and LPUSHes a Celery message.

Started by the bench with BENCH_DATABASE_URL and BENCH_REDIS_URL; the queue is its own, so no
worker of the system ever takes these messages.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import redis.asyncio as aioredis
from fastapi import FastAPI, Request

QUEUE = "bench_baseline"
TABLE = "bench_jobs"
INSERT = f"INSERT INTO {TABLE} (id, user_id, status, prompt, metadata) VALUES ($1, $2, 'queued', $3, $4::jsonb)"


def celery_message(task_id: str, kwargs: dict[str, Any]) -> bytes:
    """A Celery protocol 2 message as kombu's Redis transport stores it."""
    body = json.dumps([[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
    envelope = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"lang": "py", "task": "videogen.generate_video", "id": task_id, "root_id": task_id},
        "properties": {
            "correlation_id": task_id,
            "delivery_tag": str(uuid.uuid4()),
            "body_encoding": "base64",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUE},
            "priority": 0,
        },
    }
    return json.dumps(envelope).encode()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One connection pool to each server for the life of the process."""
    app.state.db = await asyncpg.create_pool(os.environ["BENCH_DATABASE_URL"], min_size=10, max_size=20)
    app.state.redis = aioredis.Redis.from_url(os.environ["BENCH_REDIS_URL"], max_connections=64)
    yield
    await app.state.db.close()
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.post("/api/v1/jobs", status_code=201)
async def create_job(request: Request) -> dict[str, Any]:
    """Stores the job in its own transaction, then publishes its message."""
    body = await request.json()
    job_id = uuid.uuid4().hex
    await request.app.state.db.execute(INSERT, job_id, body["userId"], body["prompt"], json.dumps(body["metadata"]))
    await request.app.state.redis.lpush(QUEUE, celery_message(job_id, {"job_id": job_id}))
    return {"id": job_id, "status": "queued"}
