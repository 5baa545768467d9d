"""What a deployment must give each process, read off the code: for the compose and k8s tests.

A setting whose default only makes sense on one developer machine (an embedded database,
loopback addresses, a data directory under the working directory) must be set by every
deployment of a process that reads it. Which processes read which is found by scanning their
code, so that a new reader fails the deployment tests until compose and k8s provide it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.core.migrate import MigrateSettings
from services.core.settings import CoreSettings
from services.edge import EdgeSettings
from services.gateway.settings import GatewaySettings
from services.jobs.settings import JobsSettings
from services.providers.settings import ProvidersSettings
from services.worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]

# How code reaches a machine-local default, and the variable a deployment sets instead.
SITE_SPECIFIC = {
    "resolve_database_url(": "DATABASE_URL",
    "resolve_redis_url(": "REDIS_URL",
    "settings.media_root": "MEDIA_DIR",
    "settings.data_dir": "DATA_DIR",
    "settings.jobs_target": "JOBS_TARGET",
    "settings.providers_target": "PROVIDERS_TARGET",
    "settings.worker_target": "WORKER_TARGET",
}

# The listening addresses a container sets: the settings default to loopback (`make run`), where
# a container's ports would be unreachable from the other containers and the kubelet.
LISTEN_EVERYWHERE = {"API_HOST": "0.0.0.0", "GRPC_BIND_HOST": "0.0.0.0", "METRICS_BIND_HOST": "0.0.0.0"}
# Read by KEDA's Redis scaler from the worker's environment (k8s/components/keda), by no service.
AUTOSCALER_READS = {"services.worker": {"REDIS_HOST", "REDIS_PORT"}}

# The settings class each command reads.
SETTINGS: dict[str, type[CoreSettings]] = {
    "services.jobs": JobsSettings,
    "services.providers": ProvidersSettings,
    "services.worker": WorkerSettings,
    "services.gateway": GatewaySettings,
    "services.core.migrate": MigrateSettings,
    # `make run`, on one machine only: no deployment runs it.
    "services.run": EdgeSettings,
}

# Variables read outside the settings classes: the Python runtime, Prometheus' multi-process
# mode, and the provider keys that a registry names (deploy/providers.example.yaml).
OTHER_KNOWN = {"PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PROMETHEUS_MULTIPROC_DIR", "HOME"} | {
    entry["api_key_env"]
    for entry in yaml.safe_load((ROOT / "deploy" / "providers.example.yaml").read_text())["providers"]
    if entry.get("api_key_env")
}


def sources(module: str) -> list[Path]:
    """The source files of a command: its package, or its one module."""
    path = ROOT.joinpath(*module.split("."))
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


# The Secret of the system's own secrets, and the optional one of the provider keys that a
# registry names (loaded whole: the registry decides their names).
SECRETS = "videogen-secrets"
PROVIDER_KEYS = "videogen-provider-keys"


def secrets_read(module: str) -> dict[str, bool]:
    """The keys of SECRETS that `python -m module` reads, each with whether it may be absent
    (the process starts without it). Read off its settings class and its code."""
    settings, text = SETTINGS[module], "\n".join(source.read_text() for source in sources(module))
    found: dict[str, bool] = {}
    # Required in production by the settings (CoreSettings._production_secrets), or read.
    if settings.REQUIRES_SECRET_KEY or "settings.secret_key" in text:
        found["SECRET_KEY"] = False
    if settings.REQUIRES_API_KEY or "settings.api_key" in text:
        found["API_KEY"] = False
    if "resolve_database_url(" in text:
        found["DATABASE_URL"] = False
    if "resolve_redis_url(" in text:
        found["REDIS_URL"] = False
    # Unset, the webhook signing key is derived from SECRET_KEY (services/core/webhooks.py reads it).
    if "webhook_secret" in settings.model_fields:
        found["WEBHOOK_SECRET"] = True
    # Unset, boto3 uses the pod's role; only MEDIA_BACKEND=s3 reads them.
    if "create_storage(" in text:
        found |= {"S3_ACCESS_KEY_ID": True, "S3_SECRET_ACCESS_KEY": True}
    return found


def reads_provider_keys(module: str) -> bool:
    """Whether `python -m module` builds providers, which read the keys their registry names."""
    return any("load_registry(" in source.read_text() for source in sources(module))


def variables_needed(module: str) -> set[str]:
    """The site-specific variables that `python -m module` reads (see SITE_SPECIFIC)."""
    text = "\n".join(source.read_text() for source in sources(module))
    return {variable for pattern, variable in SITE_SPECIFIC.items() if pattern in text}


def variables_known(module: str) -> set[str]:
    """Every variable that `python -m module` reads: a variable set outside it is a typo."""
    fields = {name.upper() for name in SETTINGS[module].model_fields}
    return fields | OTHER_KNOWN | AUTOSCALER_READS.get(module, set())


def listen_everywhere(module: str) -> dict[str, str]:
    """The listening addresses of LISTEN_EVERYWHERE that `python -m module` reads."""
    fields = SETTINGS[module].model_fields
    return {name: value for name, value in LISTEN_EVERYWHERE.items() if name.lower() in fields}


def command_module(command: list[str]) -> str | None:
    """The module of a `python -m module` command, else None."""
    text = " ".join(command)
    found = re.search(r"python3?\s+-m\s+([\w.]+)", text)
    return found.group(1) if found else None
