"""The health rules on their own: thresholds, moving average, circuit breaker, routing order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.core.provider_health import (
    Circuit,
    Health,
    HealthPolicy,
    HealthState,
    Outcome,
    circuit_of,
    is_open,
    next_state,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = HealthPolicy(unhealthy_after=3, degraded_latency_ms=1000, cooldown_seconds=60, alpha=0.5)
FRESH = HealthState(Health.HEALTHY, 0, 0.0, None, "", None)


def apply(state: HealthState, *outcomes: Outcome) -> HealthState:
    for outcome in outcomes:
        state = next_state(state, outcome, POLICY, NOW)
    return state


def test_failures_degrade_then_make_unhealthy_and_open_the_circuit() -> None:
    failure = Outcome(success=False, error="HTTP 500")

    one, three = apply(FRESH, failure), apply(FRESH, failure, failure, failure)

    assert (one.status, one.consecutive_failures, one.circuit_open_until) == (Health.DEGRADED, 1, None)
    assert (three.status, three.consecutive_failures) == (Health.UNHEALTHY, 3)
    assert three.circuit_open_until == NOW + timedelta(seconds=60)
    assert three.last_error == "HTTP 500"
    assert is_open(three, NOW) and not is_open(three, NOW + timedelta(seconds=61))


def test_the_circuit_is_closed_then_open_for_the_cool_down_then_half_open_until_a_success() -> None:
    failure = Outcome(success=False, error="HTTP 500")
    tripped = apply(FRESH, failure, failure, failure)
    healed = apply(tripped, Outcome(success=True, latency_ms=100))
    later = NOW + timedelta(seconds=61)

    assert [circuit_of(apply(FRESH, failure, failure), NOW), circuit_of(tripped, NOW)] == [Circuit.CLOSED, Circuit.OPEN]
    assert circuit_of(tripped, NOW + timedelta(seconds=59)) == Circuit.OPEN
    assert (circuit_of(tripped, later), is_open(tripped, later)) == (Circuit.HALF_OPEN, False)
    assert circuit_of(healed, later) == Circuit.CLOSED


def test_a_success_heals_and_closes_the_circuit() -> None:
    failure = Outcome(success=False, error="x")

    healed = apply(FRESH, failure, failure, failure, Outcome(success=True, latency_ms=100))

    assert (healed.status, healed.consecutive_failures, healed.circuit_open_until, healed.last_error) == (
        Health.HEALTHY,
        0,
        None,
        "",
    )


def test_response_time_is_a_moving_average_and_slowness_degrades() -> None:
    state = apply(FRESH, Outcome(success=True, latency_ms=400), Outcome(success=True, latency_ms=2000))

    assert state.avg_response_time_ms == 1200  # 400 * 0.5 + 2000 * 0.5
    assert state.status == Health.DEGRADED


def test_rate_limiting_is_not_a_failure() -> None:
    state = apply(FRESH, *[Outcome(success=False, rate_limited=True, error="429")] * 5)

    assert (state.status, state.consecutive_failures, state.last_checked_at) == (Health.HEALTHY, 0, NOW)
