"""The rules of provider health: from one outcome to the next state, and routing order."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class Health(StrEnum):
    """How a provider is doing."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


# provider_health_status: 1 healthy, 0.5 degraded, 0 unhealthy.
GAUGE = {Health.HEALTHY: 1.0, Health.DEGRADED: 0.5, Health.UNHEALTHY: 0.0}
_RANK = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}


@dataclass(frozen=True)
class HealthPolicy:
    """Thresholds, from settings."""

    unhealthy_after: int = 3
    degraded_latency_ms: float = 5000.0
    cooldown_seconds: float = 60.0
    alpha: float = 0.3


@dataclass(frozen=True)
class Outcome:
    """One probe or one real call."""

    success: bool
    latency_ms: float | None = None
    error: str = ""
    rate_limited: bool = False


@dataclass(frozen=True)
class HealthState:
    """A provider's row of provider_health."""

    status: Health
    consecutive_failures: int
    avg_response_time_ms: float
    circuit_open_until: datetime | None
    last_error: str
    last_checked_at: datetime | None


def next_state(state: HealthState, outcome: Outcome, policy: HealthPolicy, now: datetime) -> HealthState:
    """The state after outcome: a 429 changes nothing but the check time; a success closes the
    circuit; enough consecutive failures make the provider unhealthy and open it for the cool-down."""
    state = replace(state, last_checked_at=now)
    if outcome.rate_limited:
        return state
    if outcome.success:
        average = state.avg_response_time_ms
        if outcome.latency_ms is not None:
            average = (
                outcome.latency_ms if average == 0 else average * (1 - policy.alpha) + outcome.latency_ms * policy.alpha
            )
        slow = average > policy.degraded_latency_ms
        return replace(
            state,
            status=Health.DEGRADED if slow else Health.HEALTHY,
            consecutive_failures=0,
            avg_response_time_ms=average,
            circuit_open_until=None,
            last_error="",
        )
    failures = state.consecutive_failures + 1
    if failures >= policy.unhealthy_after:
        return replace(
            state,
            status=Health.UNHEALTHY,
            consecutive_failures=failures,
            circuit_open_until=now + timedelta(seconds=policy.cooldown_seconds),
            last_error=outcome.error[:4000],
        )
    return replace(state, status=Health.DEGRADED, consecutive_failures=failures, last_error=outcome.error[:4000])


class Circuit(StrEnum):
    """A provider's circuit breaker, as routing sees it."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


def circuit_of(state: HealthState, now: datetime) -> Circuit:
    """Open while the cool-down runs; half-open after it, until a success closes it."""
    if state.circuit_open_until is None:
        return Circuit.CLOSED
    return Circuit.OPEN if state.circuit_open_until > now else Circuit.HALF_OPEN


def is_open(state: HealthState, now: datetime) -> bool:
    """Whether routing must skip the provider now."""
    return circuit_of(state, now) is Circuit.OPEN


def rank(state: HealthState) -> int:
    """Routing order of a health: healthy first, then degraded, then unhealthy (half-open)."""
    return _RANK[state.status]
