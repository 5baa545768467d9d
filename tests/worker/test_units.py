"""The worker's parts on their own: backoff, the local renderer, storage, broker and queues."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from services.core.generators.base import InvalidOptions, JobCancelled
from services.core.generators.local import LocalRenderer
from services.core.job.options import JobOptions
from services.core.settings import CoreSettings
from services.core.storage.base import InvalidStorageKey
from services.core.storage.local import LocalMediaStorage
from services.core.tasks import broker_url, create_celery
from services.worker.runner import RetryPolicy


def settings(**values: object) -> CoreSettings:
    return CoreSettings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("retry_count", "ceiling"), [(0, 60), (1, 120), (5, 1920), (6, 3600), (40, 3600)])
def test_backoff_doubles_from_60s_up_to_an_hour_with_jitter(retry_count: int, ceiling: float) -> None:
    policy = RetryPolicy(base=60, max_delay=3600, jitter=True)
    rng = random.Random(7)

    delays = [policy.delay(retry_count, rng) for _ in range(200)]

    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(set(delays)) > 100


def test_backoff_without_jitter_is_exact() -> None:
    assert [RetryPolicy(base=1, max_delay=5, jitter=False).delay(n) for n in range(5)] == [1, 2, 4, 5, 5]


def test_render_defaults() -> None:
    spec = LocalRenderer().spec("a cat", JobOptions.parse({}))

    assert (spec.duration_seconds, spec.width, spec.height, spec.fps) == (4, 640, 360, 24)


@pytest.mark.parametrize(
    "metadata",
    [
        {"width": 63},
        {"width": 1922},
        {"width": 101},
        {"height": 2000},
        {"fps": 61},
        {"durationSeconds": 0.5},
        {"durationSeconds": 61},
    ],
)
def test_render_options_out_of_bounds_are_invalid(metadata: dict[str, object]) -> None:
    with pytest.raises(InvalidOptions):
        LocalRenderer().spec("a cat", JobOptions.parse(metadata))


def test_render_is_deterministic_and_depends_on_the_prompt(tmp_path: Path) -> None:
    renderer = LocalRenderer()
    options = {"durationSeconds": 1, "width": 96, "height": 64, "fps": 8}

    def digest(prompt: str, name: str) -> str:
        path = tmp_path / name
        renderer.generate(
            renderer.spec(prompt, JobOptions.parse(options)),
            output=path,
            progress=lambda f, s: None,
            on_task=lambda task_id: None,
        )
        return hashlib.sha256(path.read_bytes()).hexdigest()

    assert digest("a red fox", "a.mp4") == digest("a red fox", "b.mp4")
    assert digest("a red fox", "a.mp4") != digest("a blue whale", "c.mp4")


def test_render_stops_when_progress_says_cancelled(tmp_path: Path) -> None:
    renderer = LocalRenderer()
    spec = renderer.spec("a cat", JobOptions.parse({"durationSeconds": 10, "width": 64, "height": 64, "fps": 10}))
    seen: list[float] = []

    def progress(fraction: float, stage: str) -> None:
        seen.append(fraction)
        if len(seen) == 3:
            raise JobCancelled("job")

    with pytest.raises(JobCancelled):
        renderer.generate(spec, output=tmp_path / "v.mp4", progress=progress, on_task=lambda task_id: None)

    assert len(seen) == 3


def test_storage_stores_atomically_and_deletes(tmp_path: Path) -> None:
    storage = LocalMediaStorage(tmp_path / "media")
    partial = storage.partial_path("abc.mp4")
    partial.write_bytes(b"video")
    assert not (tmp_path / "media" / "abc.mp4").exists()

    stored = storage.store(partial, "abc.mp4")

    assert (stored.url, stored.size_bytes, stored.content_type) == ("/media/abc.mp4", 5, "video/mp4")
    assert not partial.exists()
    assert storage.delete("abc.mp4") is True
    assert storage.delete("abc.mp4") is False
    assert list((tmp_path / "media").glob("*.mp4")) == []


@pytest.mark.parametrize("key", ["../etc/passwd", "a/b.mp4", ".hidden.mp4", "x.exe", "", "UPPER.mp4"])
def test_storage_refuses_keys_that_could_escape(tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidStorageKey):
        LocalMediaStorage(tmp_path).path(key)


@pytest.mark.parametrize(
    ("redis_url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("unix:///tmp/r/redis.socket?db=2", "redis+socket:///tmp/r/redis.socket?virtual_host=2"),
    ],
)
def test_broker_url_from_redis_url(redis_url: str, expected: str) -> None:
    assert broker_url(settings(), redis_url) == expected


def test_celery_broker_url_wins() -> None:
    assert broker_url(settings(celery_broker_url="redis://other:1/3"), "redis://x/0") == "redis://other:1/3"


def test_each_queue_has_its_own_routing_key_and_order_is_fixed() -> None:
    app = create_celery(settings(), broker="redis://127.0.0.1:1/0")

    queues = {queue.name: (queue.exchange.name, queue.routing_key) for queue in app.conf.task_queues}

    assert queues == {name: (name, name) for name in ("high_priority", "default", "low_priority")}
    assert app.conf.broker_transport_options["queue_order_strategy"] == "priority"
    assert (app.conf.worker_prefetch_multiplier, app.conf.task_acks_late) == (1, True)


def test_a_lost_broker_connection_does_not_cancel_running_tasks() -> None:
    # Celery 6 will end them by default; a redelivered copy is harmless (the attempt token), a killed render is not.
    app = create_celery(settings(), broker="redis://127.0.0.1:1/0")

    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is False


@pytest.mark.parametrize(("priority", "queue"), [("high", "high_priority"), ("low", "low_priority"), ("x", "default")])
def test_priority_routing(priority: str, queue: str) -> None:
    assert JobOptions.parse({"priority": priority}).queue == queue
