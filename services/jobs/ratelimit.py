"""A per-user limit on job creation: a token bucket in Redis, shared by every jobs replica.

Each user has a bucket of `burst` tokens refilled at `per_minute / 60` per second; a create takes
one. The check is one Lua script, atomic in Redis, timed by Redis' own clock, so replicas and
their clocks never disagree. When Redis does not answer, creation is allowed (and logged):
PostgreSQL holds the job and the dispatcher publishes it once Redis is back, so a broker outage
must not turn into refused jobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions

from services.core.errors import ResourceExhausted
from services.core.logging import get_logger

log = get_logger(__name__)

# KEYS[1] the user's bucket; ARGV: refill per second, burst. Answers {allowed, seconds to wait}.
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - at) * rate)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(wait)}
"""


@dataclass(frozen=True)
class RateLimit:
    """Jobs a user may create per minute, and how many at once after a quiet spell."""

    per_minute: int
    burst: int

    @property
    def enabled(self) -> bool:
        """A limit of 0 per minute means no limit."""
        return self.per_minute > 0


class RateLimited(ResourceExhausted):
    """The user created jobs faster than the limit allows."""

    def __init__(self, user_id: str, limit: RateLimit, retry_after: float) -> None:
        super().__init__(
            f"rate limit: at most {limit.per_minute} jobs per minute per user (bursts of {limit.burst}); "
            f"retry after {math.ceil(retry_after)} s",
            limit="jobs_per_minute",
            subject=f"user:{user_id}",
            retry_after=retry_after,
        )


class CreationLimiter:
    """Takes a token for each job a user creates, or raises RateLimited."""

    def __init__(self, client: aioredis.Redis, limit: RateLimit, *, key_prefix: str = "") -> None:
        self._client = client
        self._limit = limit
        self._prefix = f"{key_prefix}videogen:rate:jobs:"
        self._take = client.register_script(_TAKE)

    async def take(self, user_id: str) -> None:
        """One token of user_id's bucket; RateLimited when it is empty."""
        if not self._limit.enabled:
            return
        try:
            allowed, wait = await self._take(
                keys=[self._prefix + user_id], args=[self._limit.per_minute / 60, self._limit.burst]
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("rate_limit.unchecked", user_id=user_id, error=repr(exc))
            return
        if not int(allowed):
            raise RateLimited(user_id, self._limit, float(wait))

    async def close(self) -> None:
        """Closes the Redis connections."""
        await self._client.aclose()
