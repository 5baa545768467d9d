"""The health rules on their own: thresholds, moving average, circuit breaker, routing order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.core.providers.registry import ProviderConfig
from services.providers.health import Health, HealthPolicy, HealthState, Outcome, is_open, next_state, route

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


def test_routing_prefers_healthy_then_cheap_then_fast_and_skips_open_circuits() -> None:
    def config(name: str, cost: float, models: list[str] | None = None) -> ProviderConfig:
        return ProviderConfig(name=name, kind="local", cost_per_request=cost, models=models or [])

    slow = HealthState(Health.HEALTHY, 0, 900.0, None, "", None)
    fast = HealthState(Health.HEALTHY, 0, 100.0, None, "", None)
    degraded = HealthState(Health.DEGRADED, 1, 50.0, None, "", None)
    broken = HealthState(Health.UNHEALTHY, 3, 50.0, NOW + timedelta(seconds=30), "x", None)
    candidates = [
        (config("cheap-slow", 0.1), slow),
        (config("cheap-fast", 0.1), fast),
        (config("pricey", 0.9), fast),
        (config("flaky", 0.0), degraded),
        (config("down", 0.0), broken),
        (config("other-model", 0.0, ["m2"]), fast),
    ]

    order = [c.name for c in route(candidates, model="m1", exclude=set(), now=NOW)]

    assert order == ["cheap-fast", "cheap-slow", "pricey", "flaky"]
    assert route(candidates, model="m1", exclude={"cheap-fast"}, now=NOW)[0].name == "cheap-slow"
    after_cooldown = [c.name for c in route(candidates, model="", exclude=set(), now=NOW + timedelta(seconds=31))]
    assert "down" in after_cooldown
