"""Settings of the providers service: probing and the health thresholds."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from services.core.settings import CoreSettings


class ProvidersSettings(CoreSettings):
    """CoreSettings plus how providers are probed and judged."""

    provider_probe_interval: Annotated[float, Field(gt=0, le=3600)] = 30.0
    provider_probe_timeout: Annotated[float, Field(gt=0, le=300)] = 10.0
    # Consecutive failures that make a provider unhealthy (and open its circuit).
    provider_unhealthy_after: Annotated[int, Field(ge=1, le=100)] = 3
    # A moving-average response time above this makes a provider degraded.
    provider_degraded_latency_ms: Annotated[float, Field(gt=0)] = 5000.0
    # How long routing skips an unhealthy provider before trying it again.
    provider_cooldown_seconds: Annotated[float, Field(ge=0, le=86400)] = 60.0
    # Weight of the newest response time in the moving average.
    provider_latency_alpha: Annotated[float, Field(gt=0, le=1)] = 0.3
