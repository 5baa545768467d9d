"""A provider's concurrency cap (`max_concurrency` in the registry), shared by every worker:
a Redis sorted set per provider of the attempts running there, each with an expiry that the
attempt's heartbeat pushes back, so that a worker that dies frees its slot within SLOT_TTL."""

from __future__ import annotations

import time

import redis

from services.core.logging import get_logger

log = get_logger(__name__)
# A held slot lives this long without a refresh (the heartbeat refreshes it far more often).
SLOT_TTL = 60.0
# Takes a slot for holder when it holds one already or fewer than limit are held; 1 or 0.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[4]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), ARGV[4])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 60)
  return 1
end
return 0
"""


class ProviderSlots:
    """Counting semaphores in Redis, one per provider."""

    def __init__(self, client: redis.Redis, *, key_prefix: str = "", ttl: float = SLOT_TTL) -> None:
        self._client = client
        self._prefix = key_prefix
        self._ttl = ttl
        self._acquire = client.register_script(_ACQUIRE)

    def _key(self, provider: str) -> str:
        return f"{self._prefix}videogen:provider-slots:{provider}"

    def try_acquire(self, provider: str, holder: str, *, limit: int) -> bool:
        """Takes (or refreshes) holder's slot at provider when one is free."""
        taken = self._acquire(keys=[self._key(provider)], args=[time.time(), self._ttl, limit, holder])
        return bool(taken)

    def refresh(self, provider: str, holder: str) -> None:
        """Pushes back the expiry of holder's slot (its heartbeat); never raises."""
        try:
            self._client.zadd(self._key(provider), {holder: time.time() + self._ttl}, xx=True)
        except redis.RedisError as exc:
            log.warning("provider.slot_not_refreshed", provider=provider, error=type(exc).__name__)

    def release(self, provider: str, holder: str) -> None:
        """Frees holder's slot; never raises (the slot expires anyway)."""
        try:
            self._client.zrem(self._key(provider), holder)
        except redis.RedisError as exc:
            log.warning("provider.slot_not_released", provider=provider, error=type(exc).__name__)

    def held(self, provider: str) -> int:
        """Slots held at provider now (expired ones excluded)."""
        return int(self._client.zcount(self._key(provider), time.time(), "+inf"))
