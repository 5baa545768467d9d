"""The provider registry: a YAML or JSON file (PROVIDERS_CONFIG), or `local` alone by default.

Credentials are never in the file: an entry names the environment variable that holds its key
(`api_key_env`), read when the provider is built and never logged or answered. An entry whose
key variable is unset is disabled (left out, with a log line), so one file can list every kind.
Each kind knows its host, its models and what each makes (KindInfo, in catalog.py); an entry
overrides any of them (`base_url`, `models`, `capabilities`). The provider objects are built in
kinds.py, which imports the kinds (they import this module for ProviderConfig).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from services.core.generators.base import KindInfo
from services.core.generators.capabilities import ModelCapabilities
from services.core.generators.catalog import KINDS, LOCAL_MODEL
from services.core.job.rules import PROVIDER_NAME
from services.core.logging import get_logger

log = get_logger(__name__)
# Older names of kinds, still read.
KIND_ALIASES = {"openai-videos": "openai-compatible"}
# The largest video a provider may hand us, unless its entry says otherwise.
MAX_VIDEO_BYTES = 2 * 1024**3


class RegistryError(ValueError):
    """The registry file is missing, unreadable or invalid; the message names the place."""


def kind_info(kind: str) -> KindInfo | None:
    """What a kind knows by itself (None for plugins, which know nothing in advance)."""
    return KINDS.get(kind)


class ProviderConfig(BaseModel):
    """One provider of the registry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=PROVIDER_NAME.pattern)]
    kind: str
    # The models jobs may use here; empty: every model the kind knows (any, for a plugin).
    models: list[Annotated[str, Field(min_length=1, max_length=128)]] = []
    default_model: str | None = None
    # What a model makes, over (or besides) what the kind knows of it.
    capabilities: dict[str, ModelCapabilities] = {}
    cost_per_request: Annotated[float, Field(ge=0)] = 0.0
    timeout_seconds: Annotated[float, Field(gt=0, le=7200)] = 600.0
    # The API's host, over the kind's own (a proxy, a regional endpoint, a test's fake).
    base_url: str | None = None
    api_key_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None
    poll_interval_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    # How many of our jobs may run on it at once (its plan's concurrency); None: no cap.
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] | None = None
    max_video_bytes: Annotated[int, Field(ge=1024, le=64 * 1024**3)] = MAX_VIDEO_BYTES
    # False leaves the entry out (as an unset key variable does).
    enabled: bool = True
    # comfyui: the workflow file (API format) with the placeholders of docs/providers.md.
    workflow: str | None = None
    # openai-compatible: the server's request shape (docs/providers.md): OpenAI's multipart
    # fields alone, those plus vLLM-Omni's own (fps, num_frames, seed, ...), or Together's JSON.
    dialect: Literal["openai", "vllm-omni", "together"] = "openai"
    # plugin: "module:Class", constructed with this config
    plugin: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]+:[A-Za-z0-9_]+$")] | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        value = KIND_ALIASES.get(value, value)
        if value != "plugin" and value not in KINDS:
            raise ValueError(f"unknown kind {value!r}; one of {', '.join(sorted([*KINDS, 'plugin']))}")
        return value

    @model_validator(mode="after")
    def _kind_fields(self) -> ProviderConfig:
        info = kind_info(self.kind)
        if self.kind == "plugin" and not self.plugin:
            raise ValueError("plugin (module:Class) is required for kind plugin")
        if self.dialect != "openai" and self.kind != "openai-compatible":
            raise ValueError("dialect is for kind openai-compatible only")
        if self.dialect == "together" and not self.models:
            raise ValueError("dialect together needs models (Together serves many; name yours)")
        if info is not None:
            if info.base_url is None and not self.base_url:
                raise ValueError(f"base_url is required for kind {self.kind}")
            if info.needs_key and self.api_key_env is None:
                raise ValueError(f"api_key_env (the variable holding the key) is required for kind {self.kind}")
            unknown = [m for m in self.models if m not in info.models and m not in self.capabilities]
            if unknown and info.models:
                raise ValueError(
                    f"model {unknown[0]!r} is unknown to kind {self.kind}: give its capabilities "
                    f"(known: {', '.join(info.models)})"
                )
        if self.default_model and self.default_model not in self.available_models(info):
            raise ValueError("default_model must be one of models")
        return self

    def available_models(self, info: KindInfo | None = None) -> list[str]:
        """The models jobs may use here."""
        if self.models:
            return list(self.models)
        info = info or kind_info(self.kind)
        return list(info.models) if info is not None else list(self.capabilities)

    @property
    def model(self) -> str:
        """The model used when a job names none."""
        if self.default_model:
            return self.default_model
        info = kind_info(self.kind)
        models = self.available_models(info)
        if info is not None and info.default_model in models:
            return info.default_model
        return models[0] if models else ""

    def supports(self, model: str) -> bool:
        """Whether a job asking for model can run here (a plugin listing none: any)."""
        models = self.available_models()
        return not model or not models or model in models

    def capabilities_of(self, model: str) -> ModelCapabilities | None:
        """What model makes here: the entry's word, else the kind's; None when nobody says
        (a plugin's model), which routing takes as "anything"."""
        if model in self.capabilities:
            return self.capabilities[model]
        info = kind_info(self.kind)
        return info.models.get(model) if info is not None else None

    @property
    def host(self) -> str:
        """The API's base URL: the entry's, else the kind's own."""
        info = kind_info(self.kind)
        return (self.base_url or (info.base_url if info else None) or "").rstrip("/")

    def api_key(self, environ: Mapping[str, str] | None = None) -> SecretStr | None:
        """The credential from the environment, if this provider names one and it is set."""
        if self.api_key_env is None:
            return None
        value = (environ if environ is not None else os.environ).get(self.api_key_env, "")
        return SecretStr(value) if value else None

    def disabled_because(self, environ: Mapping[str, str] | None = None) -> str | None:
        """Why the entry is left out (None when it is used)."""
        if not self.enabled:
            return "enabled: false"
        if self.api_key_env is not None and self.api_key(environ) is None:
            return f"{self.api_key_env} is not set"
        return None


class RegistryConfig(BaseModel):
    """Every configured provider, by unique name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    providers: Annotated[list[ProviderConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> RegistryConfig:
        names = [p.name for p in self.providers]
        if len(names) != len(set(names)):
            raise ValueError("provider names must be unique")
        return self

    def get(self, name: str) -> ProviderConfig | None:
        """The provider called name."""
        return next((p for p in self.providers if p.name == name), None)


DEFAULT_REGISTRY = RegistryConfig(
    providers=[ProviderConfig(name="local", kind="local", models=[LOCAL_MODEL], timeout_seconds=600)]
)


def load_registry(path: Path | None, environ: Mapping[str, str] | None = None) -> RegistryConfig:
    """The enabled providers of the registry in path (YAML, or JSON for .json), or the default
    one when path is None."""
    if path is None:
        return DEFAULT_REGISTRY
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RegistryError(f"PROVIDERS_CONFIG {path}: cannot read it ({exc})") from None
    try:
        registry = RegistryConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RegistryError(f"PROVIDERS_CONFIG {path}: {where}: {first['msg']}") from None
    used = []
    for config in registry.providers:
        reason = config.disabled_because(environ)
        if reason is None:
            used.append(config)
        else:
            log.info("provider.disabled", provider=config.name, kind=config.kind, reason=reason)
    if not used:
        raise RegistryError(f"PROVIDERS_CONFIG {path}: no provider is enabled (set one's key variable)")
    return RegistryConfig(providers=used)
