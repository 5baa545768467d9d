"""Every variable of .env.example is read by something: a setting of some service, a provider
of the example registry (its api_key_env), or compose."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic_settings import BaseSettings

from services.core.migrate import MigrateSettings
from services.edge import EdgeSettings
from services.gateway.settings import GatewaySettings
from services.jobs.settings import JobsSettings
from services.providers.settings import ProvidersSettings
from services.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS: list[type[BaseSettings]] = [
    EdgeSettings,
    GatewaySettings,
    JobsSettings,
    ProvidersSettings,
    WorkerSettings,
    MigrateSettings,
]
# Set, or shown commented out, in .env.example.
VARIABLE = re.compile(r"^#? ?([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def example_variables() -> set[str]:
    return set(VARIABLE.findall((ROOT / ".env.example").read_text()))


def settings_variables() -> set[str]:
    return {name.upper() for settings in SETTINGS for name in settings.model_fields}


def compose_variables() -> set[str]:
    """The ${NAME...} that compose substitutes in our compose files, and compose's own profile switch."""
    files = [ROOT / "compose.yaml", *sorted((ROOT / "deploy").glob("*compose*.y*ml"))]
    substituted = {name for path in files for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*)", path.read_text())}
    return substituted | {"COMPOSE_PROFILES"}


def provider_key_variables() -> set[str]:
    """The key variables the example registry's providers name."""
    registry = yaml.safe_load((ROOT / "deploy" / "providers.example.yaml").read_text())
    return {provider["api_key_env"] for provider in registry["providers"] if provider.get("api_key_env")}


def test_every_example_variable_is_read() -> None:
    unread = example_variables() - settings_variables() - compose_variables() - provider_key_variables()
    assert unread == set(), f"in .env.example but read by nothing: {sorted(unread)}"


def test_the_variables_no_one_reads_are_gone() -> None:
    gone = {"API_WORKERS", "APP_DEBUG", "CELERY_RESULT_BACKEND", "REDIS_HOST", "REDIS_PORT"}
    assert example_variables() & gone == set()
    assert settings_variables() & gone == set()
