"""Settings: defaults, parsing, and the refusal of example secrets in production."""

from __future__ import annotations

import pytest

from services.core.settings import CoreSettings, load_settings


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
    assert (settings.job_retry_backoff_base, settings.job_retry_backoff_max) == (60, 3600)


def test_cors_origins_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")

    assert CoreSettings(_env_file=None).cors_origins == ["https://a.example", "https://b.example"]


def test_blank_database_url_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "  ")

    assert CoreSettings(_env_file=None).database_url is None


def test_log_level_is_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")

    assert CoreSettings(_env_file=None).log_level == "DEBUG"


def test_production_accepts_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s3cr3t-value")
    monkeypatch.setenv("API_KEY", "k3y-value")

    settings = CoreSettings(_env_file=None)

    assert settings.api_key.get_secret_value() == "k3y-value"
    assert "k3y-value" not in repr(settings)


def test_load_settings_exits_with_the_variable_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "many")

    with pytest.raises(SystemExit) as exited:
        load_settings(CoreSettings)

    assert exited.value.code == 2
    assert "configuration error: DB_POOL_SIZE:" in capsys.readouterr().err
