"""Settings of the REST gateway."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from services.core.settings import CoreSettings


class GatewaySettings(CoreSettings):
    """CoreSettings plus the gateway's deadlines."""

    # It never checks API keys: the services it calls do.
    REQUIRES_API_KEY: ClassVar[bool] = False

    # Deadline of every gRPC call the gateway makes.
    gateway_rpc_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    # Deadline of each component check of /health/ready.
    gateway_readiness_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0
    # The largest request body accepted, in bytes.
    gateway_max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 64 * 1024
