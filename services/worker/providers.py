"""Video providers behind one small interface, and the registry the worker picks them from."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class ProviderError(Exception):
    """The provider failed this attempt; another attempt may succeed."""


class InvalidOptions(ValueError):
    """The job's metadata asks for something the provider cannot do; retrying will not help."""


class JobCancelled(Exception):
    """The job left processing while it ran (it was cancelled): stop and keep nothing."""


@dataclass(frozen=True)
class VideoSpec:
    """What to render: the prompt and the options read from the job's metadata."""

    prompt: str
    duration_seconds: float
    width: int
    height: int
    fps: int


@dataclass(frozen=True)
class RenderedVideo:
    """A finished video file and what it holds."""

    path: Path
    content_type: str
    duration_seconds: float
    width: int
    height: int
    fps: float
    model: str


# Called with the fraction done (0-1) and a stage name; raises JobCancelled to stop the work.
ProgressCallback = Callable[[float, str], None]


class VideoProvider(Protocol):
    """Turns a prompt into a video file."""

    name: str

    def spec(self, prompt: str, metadata: Mapping[str, Any]) -> VideoSpec:
        """The request this provider would make of the job, or InvalidOptions."""
        ...

    def generate(self, spec: VideoSpec, *, output: Path, progress: ProgressCallback) -> RenderedVideo:
        """Writes the video to output, reporting progress; ProviderError on failure."""
        ...


def load_plugins(spec: str) -> dict[str, VideoProvider]:
    """Providers named by PROVIDER_PLUGINS ("name=module:Class,...")."""
    plugins: dict[str, VideoProvider] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        name, _, target = entry.partition("=")
        module_name, _, class_name = target.partition(":")
        if not (name and module_name and class_name):
            raise ValueError(f"PROVIDER_PLUGINS: {entry!r} is not name=module:Class")
        factory = getattr(importlib.import_module(module_name), class_name)
        plugins[name] = factory(name)
    return plugins
