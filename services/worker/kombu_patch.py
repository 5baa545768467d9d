"""A guarded fix for kombu's Redis channel closing after its connection (Celery worker crash).

kombu 5.7 (docs/reliability.md, "Patched upstream bugs"): when Redis goes away, Celery's
consumer runs ``connection.collect()`` then ``connection.close()``. ``collect()`` can leave a
channel open (its close failed on the dead socket) while it drops the transport's client
(``transport.client = None``). ``close()`` then closes that channel; the channel has just
dropped its pool, so ``restore_unacked`` rebuilds it from ``_connparams()``, which reads
``self.connection.client.hostname``: an ``AttributeError`` that no one treats as a connection
error, and the worker exits.

The fix: a channel whose connection is gone does not try to restore its unacknowledged
messages. They stay in Redis's unacked hash, and kombu's ``restore_visible`` puts them back
on their queue once the visibility timeout has passed (as for a worker that died). Building a
client for such a channel (an ack, a reject) raises redis-py's ``ConnectionError``, which
kombu and Celery already handle, instead of the ``AttributeError``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import kombu
import redis
from kombu.transport import redis as kombu_redis

from services.core.logging import get_logger

log = get_logger(__name__)

# The kombu releases this was reproduced on (tests/worker/test_kombu_patch.py pins the bug):
# widen only after that test shows the bug on the new release.
AFFECTED = ((5, 7),)


def kombu_release(version: str = kombu.__version__) -> tuple[int, int]:
    """The (major, minor) of a kombu version string."""
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def connection_gone(channel: Any) -> bool:
    """Whether a kombu Redis channel has lost the connection it would build a client from."""
    transport = channel.connection
    return transport is None or transport.client is None


def _guard_restore_unacked(original: Callable[..., Any]) -> Callable[..., Any]:
    """restore_unacked that leaves the messages to the visibility timeout on a gone connection."""

    @functools.wraps(original)
    def restore_unacked(self: Any, client: Any = None) -> Any:
        if client is None and connection_gone(self.channel):
            log.warning("kombu.restore_unacked_skipped", unacked=len(self._delivered))
            self._delivered.clear()
            return None
        return original(self, client)

    return restore_unacked


def _guard_connparams(original: Callable[..., Any]) -> Callable[..., Any]:
    """_connparams that raises a connection error, not AttributeError, on a gone connection."""

    @functools.wraps(original)
    def connparams(self: Any, asynchronous: bool = False) -> Any:
        if connection_gone(self):
            raise redis.exceptions.ConnectionError("kombu channel's connection is closed")
        return original(self, asynchronous=asynchronous)

    return connparams


def patch_kombu_redis(version: str = kombu.__version__) -> bool:
    """Applies the fix once if this kombu release is affected; whether it is in place."""
    if kombu_release(version) not in AFFECTED:
        log.info("kombu.patch_not_needed", kombu=version)
        return False
    qos, channel = kombu_redis.QoS, kombu_redis.Channel
    if hasattr(qos.restore_unacked, "__wrapped__"):
        return True
    qos.restore_unacked = _guard_restore_unacked(qos.restore_unacked)
    channel._connparams = _guard_connparams(channel._connparams)
    log.info("kombu.patch_applied", kombu=version, fix="restore_unacked on a closed connection")
    return True
