"""The provider registry: a YAML or JSON file (PROVIDERS_CONFIG), or `local` alone by default.

Credentials are never in the file: an entry names the environment variable that holds its key
(`api_key_env`), read when the provider is built and never logged or answered.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from services.core.providers.base import VideoProvider

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
LOCAL_MODEL = "local-pyav-h264-v1"


class RegistryError(ValueError):
    """The registry file is missing, unreadable or invalid; the message names the place."""


class ProviderConfig(BaseModel):
    """One provider of the registry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["local", "openai-videos", "plugin"]
    models: list[Annotated[str, Field(min_length=1, max_length=128)]] = []
    default_model: str | None = None
    cost_per_request: Annotated[float, Field(ge=0)] = 0.0
    timeout_seconds: Annotated[float, Field(gt=0, le=7200)] = 600.0
    # openai-videos
    base_url: str | None = None
    api_key_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None
    poll_interval_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    # plugin: "module:Class", constructed with this config
    plugin: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]+:[A-Za-z0-9_]+$")] | None = None

    @model_validator(mode="after")
    def _kind_fields(self) -> ProviderConfig:
        if self.kind == "openai-videos" and not self.base_url:
            raise ValueError("base_url is required for kind openai-videos")
        if self.kind == "plugin" and not self.plugin:
            raise ValueError("plugin (module:Class) is required for kind plugin")
        if self.default_model and self.models and self.default_model not in self.models:
            raise ValueError("default_model must be one of models")
        return self

    @property
    def model(self) -> str:
        """The model used when a job names none."""
        return self.default_model or (self.models[0] if self.models else "")

    def supports(self, model: str) -> bool:
        """Whether a job asking for model can run here (no models listed: any)."""
        return not model or not self.models or model in self.models

    def api_key(self, environ: Mapping[str, str] | None = None) -> SecretStr | None:
        """The credential from the environment, if this provider names one and it is set."""
        if self.api_key_env is None:
            return None
        value = (environ if environ is not None else os.environ).get(self.api_key_env, "")
        return SecretStr(value) if value else None


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


def load_registry(path: Path | None) -> RegistryConfig:
    """The registry in path (YAML, or JSON for .json), or the default one when path is None."""
    if path is None:
        return DEFAULT_REGISTRY
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RegistryError(f"PROVIDERS_CONFIG {path}: cannot read it ({exc})") from None
    try:
        return RegistryConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RegistryError(f"PROVIDERS_CONFIG {path}: {where}: {first['msg']}") from None


def build_provider(config: ProviderConfig) -> VideoProvider:
    """The provider object of one registry entry."""
    if config.kind == "local":
        from services.core.providers.local import LocalRenderer

        return LocalRenderer(config.name)
    if config.kind == "openai-videos":
        from services.core.providers.openai_videos import OpenAIVideos

        return OpenAIVideos(config)
    module_name, _, class_name = (config.plugin or "").partition(":")
    provider: VideoProvider = getattr(importlib.import_module(module_name), class_name)(config)
    return provider


def build_providers(registry: RegistryConfig) -> dict[str, VideoProvider]:
    """Every provider of the registry, by name."""
    return {config.name: build_provider(config) for config in registry.providers}
