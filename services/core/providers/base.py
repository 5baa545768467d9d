"""The interface every provider kind implements, and the errors that cross it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class ProviderError(Exception):
    """The provider failed this call; another attempt, or another provider, may succeed.

    rate_limited: the provider asked us to slow down (HTTP 429): it is up, not failing."""

    def __init__(self, message: str, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited


class InvalidOptions(ValueError):
    """The job's metadata asks for something the provider cannot do; retrying will not help."""


class JobCancelled(Exception):
    """The job left processing while it ran (it was cancelled): stop and keep nothing."""


@dataclass(frozen=True)
class VideoSpec:
    """What to generate: the prompt, the model, and the options read from the job's metadata."""

    prompt: str
    duration_seconds: float
    width: int
    height: int
    fps: int
    model: str = ""


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
    """Turns a prompt into a video file; probe() tells whether it can right now."""

    name: str

    def spec(self, prompt: str, metadata: Mapping[str, Any], *, model: str = "") -> VideoSpec:
        """The request this provider would make of the job, or InvalidOptions."""
        ...

    def generate(self, spec: VideoSpec, *, output: Path, progress: ProgressCallback) -> RenderedVideo:
        """Writes the video to output, reporting progress; ProviderError on failure."""
        ...

    def probe(self, timeout: float) -> None:
        """Returns when the provider answers within timeout seconds; ProviderError otherwise."""
        ...
