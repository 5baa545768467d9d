"""Redis for the tests: REDIS_URL or an embedded one, and clean-up of a test's keys."""

from __future__ import annotations

import os

import redis

from tests.support.processes import ROOT


def redis_server_url() -> str:
    """REDIS_URL, or an embedded Redis for the tests when it is unset."""
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        return url
    from services.core.embedded import embedded_redis

    return embedded_redis(ROOT / ".data" / "test")


def drop_keys(url: str, prefix: str) -> None:
    """Deletes every key under a test's prefix."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
