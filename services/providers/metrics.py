"""Metrics of the providers service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROVIDER_HEALTH = Gauge(
    "provider_health_status",
    "Provider health: 1 healthy, 0.5 degraded, 0 unhealthy.",
    ["provider"],
)
PROBE_DURATION = Histogram(
    "provider_probe_duration_seconds",
    "Time a health probe of a provider took.",
    ["provider"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROBES = Counter("provider_probes_total", "Health probes of providers, by outcome.", ["provider", "outcome"])
CALLS = Counter(
    "provider_calls_total",
    "Real calls to providers reported by workers, by outcome (success, failure, rate_limited).",
    ["provider", "outcome"],
)
