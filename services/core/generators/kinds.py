"""The provider kinds by their registry name, and the provider object of a registry entry."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from services.core.generators.base import VideoProvider
from services.core.generators.comfyui import ComfyUI
from services.core.generators.fal import Fal
from services.core.generators.local import LocalRenderer
from services.core.generators.luma import Luma
from services.core.generators.openai_videos import OpenAIVideos
from services.core.generators.registry import ProviderConfig, RegistryConfig
from services.core.generators.replicate import Replicate
from services.core.generators.runway import Runway

# Each kind's class, built with its registry entry (catalog.KINDS holds what each knows).
KIND_CLASSES: dict[str, Callable[[ProviderConfig], VideoProvider]] = {
    "local": LocalRenderer,
    "openai-compatible": OpenAIVideos,
    "runway": Runway,
    "luma": Luma,
    "fal": Fal,
    "replicate": Replicate,
    "comfyui": ComfyUI,
}


def build_provider(config: ProviderConfig) -> VideoProvider:
    """The provider object of one registry entry (a plugin's class loaded from its module:Class)."""
    if config.kind == "plugin":
        module_name, _, class_name = (config.plugin or "").partition(":")
        plugin: VideoProvider = getattr(importlib.import_module(module_name), class_name)(config)
        return plugin
    return KIND_CLASSES[config.kind](config)


def build_providers(registry: RegistryConfig) -> dict[str, VideoProvider]:
    """Every provider of the registry, by name."""
    return {config.name: build_provider(config) for config in registry.providers}
