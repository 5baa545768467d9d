"""kombu's Redis channel closed after its connection: the worker crash and our guarded fix."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest
import redis
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from services.worker.kombu_patch import kombu_release, patch_kombu_redis
from tests.chaos.servers import Redis

PATCHED = ((kombu_redis.QoS, "restore_unacked"), (kombu_redis.Channel, "_connparams"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Redis]:
    """A private Redis that keeps its keys across a kill (append-only file)."""
    redis_server = Redis(tmp_path, persistent=True)
    redis_server.start()
    yield redis_server
    redis_server.close()


@pytest.fixture
def unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu as released, for this test only."""
    for cls, name in PATCHED:
        method = getattr(cls, name)
        monkeypatch.setattr(cls, name, getattr(method, "__wrapped__", method))


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu with our fix, for this test only."""
    for cls, name in PATCHED:
        monkeypatch.setattr(cls, name, getattr(cls, name))  # undone after the test
    assert patch_kombu_redis()


def lose_redis_while_consuming(server: Redis, queue: Queue) -> tuple[Connection, list[Any]]:
    """What a Celery worker goes through: one unacked message, a pending BRPOP, a broadcast
    channel (auto-delete fanout queue, as Celery's pidbox), Redis killed, then the consumer's
    connection-loss path: ``collect()`` and ``close()``. Returns the connection, not yet closed."""
    with Connection(server.url) as producer:
        producer.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key=queue.routing_key, declare=[queue])
    connection = Connection(server.url)
    received: list[Any] = []
    connection.Consumer([queue], callbacks=[lambda _body, message: received.append(message)]).consume()
    broadcast = Queue(f"{queue.name}.pidbox", Exchange(f"{queue.name}.pidbox", type="fanout"), auto_delete=True)
    kombu.Consumer(connection.channel(), [broadcast], no_ack=True).consume()
    drain_until(connection, lambda: bool(received))
    idle: list[bool] = []
    drain_until(connection, lambda: bool(idle), on_idle=lambda: idle.append(True))
    channel = connection.default_channel
    assert len(received) == 1 and channel._in_poll is not None  # unacked, and BRPOP pending
    server.kill()
    connection.collect(socket_timeout=1)
    return connection, received


def drain_until(connection: Connection, done: Callable[[], bool], on_idle: Callable[[], object] = lambda: None) -> None:
    """Drains events until done() holds (an idle drain, one that times out, calls on_idle)."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, "nothing happened for 10s"
        try:
            connection.drain_events(timeout=0.1)
        except TimeoutError:
            on_idle()


def redelivered(server: Redis, queue: Queue) -> list[Any]:
    """The messages a new consumer receives once the visibility timeout (1s) has passed."""
    options = {"visibility_timeout": 1, "unacked_restore_throttle": 1}
    received: list[Any] = []
    with Connection(server.url, transport_options=options) as connection:
        connection.Consumer([queue], callbacks=[lambda body, _message: received.append(body)]).consume()
        drain_until(connection, lambda: bool(received))
    return received


def new_queue() -> Queue:
    """A queue of its own for each test."""
    name = f"q-{uuid.uuid4()}"
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


@pytest.mark.usefixtures("unpatched")
def test_released_kombu_crashes_closing_a_channel_after_its_connection(server: Redis) -> None:
    """Pins the upstream bug: once this fails, kombu is fixed and the patch can go."""
    connection, _ = lose_redis_while_consuming(server, new_queue())
    with pytest.raises(AttributeError, match="hostname"):
        connection.close()


@pytest.mark.usefixtures("patched")
def test_a_lost_redis_no_longer_crashes_the_consumer_close(server: Redis) -> None:
    """The close survives, and the unacked message comes back after the visibility timeout."""
    queue = new_queue()
    connection, _ = lose_redis_while_consuming(server, queue)
    connection.close()
    server.start()
    assert redelivered(server, queue) == [{"n": 1}]


@pytest.mark.usefixtures("patched")
def test_an_ack_on_a_closed_connection_is_a_connection_error(server: Redis) -> None:
    """Celery's ack_log_error handles a connection error; it did not handle the AttributeError."""
    connection, received = lose_redis_while_consuming(server, new_queue())
    connection.close()
    with pytest.raises(redis.exceptions.ConnectionError):
        received[0].ack()


def test_the_patch_is_applied_only_to_kombu_releases_known_affected() -> None:
    """A kombu release nobody checked keeps its own behaviour."""
    assert kombu_release("5.7.0") == (5, 7)
    assert not patch_kombu_redis("5.8.0")
