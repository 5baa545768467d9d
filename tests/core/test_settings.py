"""Settings: defaults, parsing, and the refusal of example secrets in production."""

from __future__ import annotations

import pytest

from services.core.migrate import MigrateSettings
from services.core.settings import CoreSettings, load_settings
from services.gateway.settings import GatewaySettings
from services.jobs.settings import JobsSettings
from services.worker.settings import WorkerSettings

REAL_SECRET_KEY = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f"
REAL_API_KEY = "a1b2c3d4e5f60718293a4b5c6d7e8f90"


def test_defaults_match_the_contract_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JOBS_GRPC_PORT", "EDGE_PORT", "API_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = CoreSettings(_env_file=None)

    assert (settings.edge_port, settings.api_port, settings.envoy_admin_port) == (8000, 8080, 9901)
    assert (settings.jobs_grpc_port, settings.providers_grpc_port, settings.worker_grpc_port) == (50051, 50052, 50053)
    assert (settings.jobs_metrics_port, settings.providers_metrics_port, settings.worker_metrics_port) == (
        9101,
        9102,
        9103,
    )
    assert (settings.celery_task_soft_time_limit, settings.celery_task_time_limit) == (3600, 4000)
    worker = WorkerSettings(_env_file=None)
    assert (worker.job_retry_backoff_base, worker.job_retry_backoff_max) == (60, 3600)


def test_every_service_listens_on_loopback_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_HOST", "GRPC_BIND_HOST", "METRICS_BIND_HOST"):
        monkeypatch.delenv(name, raising=False)
    settings = GatewaySettings(_env_file=None)

    assert {settings.api_host, settings.grpc_bind_host, settings.metrics_bind_host} == {"127.0.0.1"}


def test_cors_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")

    assert GatewaySettings(_env_file=None).cors_origins == ["https://a.example", "https://b.example"]


def test_blank_database_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")

    assert CoreSettings(_env_file=None).database_url is None


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")

    assert CoreSettings(_env_file=None).log_level == "DEBUG"


def test_production_starts_with_only_the_two_seed_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", REAL_SECRET_KEY)
    monkeypatch.setenv("API_KEY", REAL_API_KEY)
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)

    settings = load_settings(JobsSettings)

    assert settings.api_key.get_secret_value() == REAL_API_KEY
    assert REAL_API_KEY not in repr(settings) and REAL_SECRET_KEY not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("API_KEY", "short-key"),
        ("API_KEY", "change-me-api-key"),
        ("SECRET_KEY", "change-me-secret-key"),
        ("SECRET_KEY", "REPLACE_ME_REPLACE_ME_REPLACE_ME_REPLACE_ME"),
        ("API_KEY", ""),
        ("WEBHOOK_SECRET", "changeme"),
    ],
)
def test_production_refuses_a_weak_secret_with_exit_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", REAL_SECRET_KEY)
    monkeypatch.setenv("API_KEY", REAL_API_KEY)
    monkeypatch.setenv(variable, value)

    with pytest.raises(SystemExit) as exited:
        load_settings(JobsSettings)

    assert exited.value.code == 2
    assert variable in capsys.readouterr().err


def test_production_refuses_the_api_key_equal_to_the_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", REAL_SECRET_KEY)
    monkeypatch.setenv("API_KEY", REAL_SECRET_KEY)

    with pytest.raises(SystemExit):
        load_settings(CoreSettings)


def test_the_gateway_and_the_worker_need_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", REAL_SECRET_KEY)
    monkeypatch.delenv("API_KEY", raising=False)

    assert load_settings(GatewaySettings).app_env == "production"
    assert load_settings(WorkerSettings).app_env == "production"
    with pytest.raises(SystemExit):
        load_settings(JobsSettings)


def test_the_migration_needs_no_secret_key_nor_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("API_KEY", raising=False)

    assert load_settings(MigrateSettings).app_env == "production"
    with pytest.raises(SystemExit):
        load_settings(CoreSettings)


def test_load_settings_exits_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "many")

    with pytest.raises(SystemExit) as exited:
        load_settings(CoreSettings)

    assert exited.value.code == 2
    assert "configuration error: DB_POOL_SIZE:" in capsys.readouterr().err
