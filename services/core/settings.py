"""Settings shared by every service, read once from the environment and validated."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.secrets import secret_problem

# The placeholder secrets of .env.example: fine on a laptop, refused in production.
EXAMPLE_SECRET_KEY = "change-me-secret-key"
EXAMPLE_API_KEY = "change-me-api-key"
# The placeholder of the S3 secret (.env.example, and MinIO's in deploy/docker-compose.yml).
EXAMPLE_S3_SECRET = "change-me-s3-secret"

# MEDIA_URL_TTL_SECONDS' bounds: long enough to start a download, at most a week (as S3's presigning).
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 7 * 24 * 3600

Port = Annotated[int, Field(ge=0, le=65535)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class CoreSettings(BaseSettings):
    """Every variable of the seed README plus the addresses of the services."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", validate_default=True)
    # Whether this process checks API keys, so that production refuses to start without a real
    # API_KEY; the gateway and the worker never read it (their Deployments do not get it).
    REQUIRES_API_KEY: ClassVar[bool] = True
    # Whether it derives keys from SECRET_KEY (every service does; the migration does not).
    REQUIRES_SECRET_KEY: ClassVar[bool] = True

    # Application
    app_name: str = "videogen"
    app_env: Literal["development", "test", "staging", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # The OTLP/HTTP collector that spans go to; tracing is off while unset (services/core/tracing.py).
    otel_exporter_otlp_endpoint: str | None = None

    # The REST gateway's port (its host and CORS origins are GatewaySettings').
    api_port: Port = 8080

    # Database: unset means an embedded PostgreSQL under DATA_DIR.
    database_url: str | None = None
    postgres_db: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")] = "videogen"
    # Connections kept open per process. Overflow connections are closed when handed back, so a
    # load above the pool opens and closes a connection per query (and prepares its statements
    # again): size the pool to the load rather than lean on overflow.
    db_pool_size: Annotated[int, Field(ge=1, le=200)] = 20
    db_max_overflow: Annotated[int, Field(ge=0, le=200)] = 0
    db_connect_timeout: PositiveSeconds = 5.0
    db_statement_timeout: PositiveSeconds = 30.0
    # A round trip before every checkout; off, a dropped connection fails one call (UNAVAILABLE)
    # and the pool is refilled.
    db_pool_pre_ping: bool = False

    # Redis: unset means an embedded Redis under DATA_DIR.
    redis_url: str | None = None

    # Celery
    celery_broker_url: str | None = None
    celery_task_time_limit: PositiveSeconds = 4000
    celery_task_soft_time_limit: PositiveSeconds = 3600
    # Prefix of every Redis key Celery uses, so that systems (or test runs) can share one Redis.
    celery_key_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{0,64}$")] = ""

    # The provider registry (YAML or JSON); unset means the built-in `local` provider alone.
    providers_config: Path | None = None

    # Media storage: a local directory (DATA_DIR/media when unset), served under MEDIA_URL_PREFIX.
    # With MEDIA_BACKEND=s3 videos live in an S3-compatible bucket (docs/storage.md) and the
    # directory only holds videos being written.
    media_backend: Literal["local", "s3"] = "local"
    media_dir: Path | None = None
    media_url_prefix: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_./-]*/$")] = "/media/"
    # Local: how long a signed videoUrl stays valid (services/core/media_urls.py).
    media_url_ttl_seconds: Annotated[int, Field(ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)] = 3600
    # S3: unset endpoint means AWS's own for S3_REGION; presigned URLs name S3_PUBLIC_ENDPOINT_URL
    # (where clients reach the store) when it differs from the services' address.
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_bucket: Annotated[str, Field(pattern=r"^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$")] = ""
    s3_region: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,32}$")] = "us-east-1"
    # Unset keys: boto3's own chain (instance role, AWS_* variables, ~/.aws).
    s3_access_key_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{0,128}$")] = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_key_prefix: Annotated[str, Field(pattern=r"^([A-Za-z0-9_.-]+/)*$")] = ""
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    s3_presign_seconds: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 3600
    s3_timeout: PositiveSeconds = 10.0

    # Security (docs/security.md). SECRET_KEY: every process; the keys of media URLs, webhook
    # signatures and the service credential are derived from it. API_KEY: the admin key, checked
    # by the services that answer clients (jobs, providers); see REQUIRES_API_KEY.
    secret_key: SecretStr = SecretStr(EXAMPLE_SECRET_KEY)
    api_key: SecretStr = SecretStr(EXAMPLE_API_KEY)

    # Where embedded servers and media live when nothing else is configured.
    data_dir: Path = Path(".data")

    # Ports and addresses of the processes (contract.md); loopback by default, as API_HOST.
    grpc_bind_host: str = "127.0.0.1"
    metrics_bind_host: str = "127.0.0.1"
    edge_port: Port = 8000
    envoy_admin_port: Port = 9901
    # Envoy's listener for Prometheus (/stats/prometheus) and probes (/ready); the admin stays on loopback.
    envoy_metrics_port: Port = 9902
    jobs_grpc_port: Port = 50051
    jobs_metrics_port: Port = 9101
    providers_grpc_port: Port = 50052
    providers_metrics_port: Port = 9102
    worker_grpc_port: Port = 50053
    worker_metrics_port: Port = 9103
    jobs_target: str = "127.0.0.1:50051"
    providers_target: str = "127.0.0.1:50052"
    worker_target: str = "127.0.0.1:50053"

    # gRPC servers
    grpc_max_message_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 4 * 1024 * 1024
    health_check_interval: PositiveSeconds = 2.0
    shutdown_grace: Annotated[float, Field(ge=0)] = 10.0
    shutdown_drain_delay: Annotated[float, Field(ge=0, le=60)] = 1.0
    migrate_on_start: bool = True

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "database_url",
        "redis_url",
        "celery_broker_url",
        "s3_endpoint_url",
        "s3_public_endpoint_url",
        "otel_exporter_otlp_endpoint",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("s3_endpoint_url", "s3_public_endpoint_url", "otel_exporter_otlp_endpoint")
    @classmethod
    def _http_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be an http(s) URL such as http://minio:9000 or http://otel-collector:4318")
        return value.rstrip("/")

    @property
    def media_root(self) -> Path:
        """Where videos are stored on disk."""
        return self.media_dir if self.media_dir is not None else self.data_dir / "media"

    @model_validator(mode="after")
    def _s3_complete(self) -> CoreSettings:
        if self.media_backend != "s3":
            return self
        if not self.s3_bucket:
            raise ValueError("S3_BUCKET must be set when MEDIA_BACKEND=s3")
        if bool(self.s3_access_key_id) != bool(self.s3_secret_access_key.get_secret_value()):
            raise ValueError("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY must be set together (or both left unset)")
        if self.app_env == "production" and self.s3_secret_access_key.get_secret_value() == EXAMPLE_S3_SECRET:
            raise ValueError("S3_SECRET_ACCESS_KEY must be set to a real secret when APP_ENV=production")
        return self

    @model_validator(mode="after")
    def _production_secrets(self) -> CoreSettings:
        if self.app_env != "production":
            return self
        required = [("SECRET_KEY", self.secret_key)] if self.REQUIRES_SECRET_KEY else []
        if self.REQUIRES_API_KEY:
            required.append(("API_KEY", self.api_key))
        for name, value in required:
            problem = secret_problem(value.get_secret_value(), examples=(EXAMPLE_SECRET_KEY, EXAMPLE_API_KEY))
            if problem is not None:
                raise ValueError(f"{name} {problem} when APP_ENV=production")
        both = self.REQUIRES_API_KEY and self.REQUIRES_SECRET_KEY
        if both and self.api_key.get_secret_value() == self.secret_key.get_secret_value():
            raise ValueError("API_KEY must differ from SECRET_KEY")
        return self


SettingsT = TypeVar("SettingsT", bound=CoreSettings)


def load_settings(cls: type[SettingsT]) -> SettingsT:
    """Reads settings once; a bad value stops the process with a message naming the variable."""
    try:
        return cls()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            lines.append(
                f"configuration error: {variable}: {message}" if variable else f"configuration error: {message}"
            )
        sys.stderr.write("\n".join(lines) + "\n")
        raise SystemExit(2) from None
