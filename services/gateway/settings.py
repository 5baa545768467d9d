"""Settings of the REST gateway."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.core.settings import CoreSettings


class GatewaySettings(CoreSettings):
    """CoreSettings plus the gateway's listener, CORS origins and deadlines."""

    # It never checks API keys: the services it calls do.
    REQUIRES_API_KEY: ClassVar[bool] = False

    # Every listener defaults to loopback, so that `make run` exposes the edge alone; the
    # containers listen on every interface (deploy/Dockerfile, compose, k8s set 0.0.0.0).
    api_host: str = "127.0.0.1"
    # CORS: a comma-separated list of origins.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["http://localhost:3000"])
    # Deadline of every gRPC call the gateway makes.
    gateway_rpc_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    # Deadline of each component check of /health/ready.
    gateway_readiness_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0
    # The largest request body accepted, in bytes.
    gateway_max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 64 * 1024
    # The gateway's own access log line: `errors` for 4xx, 5xx and requests slower than a second
    # (the edge writes one line for every request), `all` for every request (a gateway without
    # the edge in front).
    gateway_access_log: Literal["errors", "all"] = "errors"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value
