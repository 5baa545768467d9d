"""The jobs service's own publisher writes the message Celery's send_task writes, where Celery reads it."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis

from services.core.settings import CoreSettings
from services.core.tasks import (
    GENERATE_VIDEO,
    MAX_RESUMED_WORKERS,
    GenerateVideo,
    broker_redis_url,
    broker_url,
    create_celery,
)
from services.jobs.dispatch.publisher import JobPublisher
from tests.support.brokers import drop_keys

# Fields that differ on every message (ids, tags) or between processes (origin host and pid).
PER_MESSAGE = {"id", "root_id", "correlation_id", "delivery_tag", "origin"}


def _decoded(raw: bytes) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    for part in (message["headers"], message["properties"]):
        for name in PER_MESSAGE & part.keys():
            part[name] = "*"
    return message


async def test_the_message_is_the_one_send_task_writes(redis_url: str) -> None:
    prefix = f"pub{uuid.uuid4().hex[:8]}-"
    settings = CoreSettings(celery_key_prefix=prefix)
    broker = broker_url(settings, redis_url)
    app = create_celery(settings, broker=broker)
    payload = GenerateVideo(job_id="c" + "a" * 24, attempt=2, request_id="req-1")
    sync = redis.Redis.from_url(redis_url)
    try:
        app.send_task(
            GENERATE_VIDEO, kwargs=payload.to_kwargs(), queue="high_priority", headers={"request_id": "req-1"}
        )
        by_celery = sync.lpop(f"{prefix}high_priority")
        publisher = JobPublisher(app, aioredis.Redis.from_url(broker_redis_url(broker)), key_prefix=prefix)
        assert await publisher.publish(payload, queue="high_priority")
        ours = sync.lpop(f"{prefix}high_priority")
        await publisher.close()
    finally:
        sync.close()
        drop_keys(redis_url, prefix)
    assert isinstance(by_celery, bytes) and isinstance(ours, bytes)
    assert _decoded(ours) == _decoded(by_celery)
    assert _decoded(ours)["body"][1] == {"job_id": payload.job_id, "attempt": 2, "request_id": "req-1"}


async def test_a_broker_that_is_down_is_a_false_answer_not_an_error() -> None:
    app = create_celery(CoreSettings(), broker="redis://127.0.0.1:1/0")
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    publisher = JobPublisher(app, client, timeout=2)
    try:
        assert not await publisher.publish(GenerateVideo(job_id="c" + "b" * 24, attempt=0), queue="default")
    finally:
        await publisher.close()


def test_kombu_socket_urls_map_back_to_redis_py() -> None:
    assert broker_redis_url("redis+socket:///tmp/r.sock?virtual_host=3") == "unix:///tmp/r.sock?db=3"
    assert broker_redis_url("redis://127.0.0.1:6379/2") == "redis://127.0.0.1:6379/2"


def test_a_message_names_the_earlier_deliveries_it_resumes_only_when_there_are_some() -> None:
    payload = GenerateVideo(job_id="c" + "c" * 24, attempt=1, request_id="req-2")
    assert payload.to_kwargs() == {"job_id": "c" + "c" * 24, "attempt": 1, "request_id": "req-2"}

    again = payload.resumed_by("h/1/t").resumed_by("h/2/t")
    assert again.to_kwargs()["resumes"] == ["h/1/t", "h/2/t"]
    assert (again.job_id, again.attempt, again.request_id) == (payload.job_id, 1, "req-2")

    for n in range(3, 3 + MAX_RESUMED_WORKERS):
        again = again.resumed_by(f"h/{n}/t")
    assert len(again.resumes) == MAX_RESUMED_WORKERS and again.resumes[-1] == f"h/{2 + MAX_RESUMED_WORKERS}/t"
