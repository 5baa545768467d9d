"""The interface every provider kind implements, and the errors that cross it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from services.core.generators.capabilities import ModelCapabilities
from services.core.job.options import JobOptions


class ProviderError(Exception):
    """The provider failed this call; another attempt, or another provider, may succeed.

    rate_limited: the provider asked us to slow down (HTTP 429): it is up, not failing.
    final: retrying will not help anywhere (a safety refusal of the prompt): the job fails."""

    def __init__(self, message: str, *, rate_limited: bool = False, final: bool = False) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited
        self.final = final


class InvalidOptions(ValueError):
    """The job's options ask for something the provider cannot do; retrying will not help."""


class JobCancelled(Exception):
    """The job left processing while it ran (it was cancelled): stop and keep nothing."""


@dataclass(frozen=True)
class VideoSpec:
    """What to generate: the prompt, the model, and the job's options already mapped to the
    model's legal values."""

    prompt: str
    duration_seconds: float
    width: int
    height: int
    fps: int
    model: str = ""
    # The model's aspect ratio ("16:9") when it takes one rather than pixels.
    aspect_ratio: str = ""
    # An https URL of the first frame (image-to-video), from metadata.imageUrl.
    image_url: str | None = None
    seed: int | None = None
    # The kind's own further fields (a hosted model's input, a server's tuning fields).
    extra: Mapping[str, Any] = field(default_factory=dict)


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
    # The codec of the video stream ("h264", "hevc", ...), as the file says.
    codec: str = ""


# Called with the fraction done (0-1) and a stage name; raises JobCancelled to stop the work.
ProgressCallback = Callable[[float, str], None]
# Called with the provider's id of the task it started, before it waits for it: the worker
# records it on the job, so that a later attempt can cancel it if this one dies.
TaskCallback = Callable[[str], None]


@dataclass(frozen=True)
class KindInfo:
    """What a provider kind knows without being configured: its host, its models and what
    each makes, and whether it needs a key."""

    # The provider's own API host; None: the registry entry must give base_url.
    base_url: str | None
    # The models it knows, with what each makes; an entry may list others with capabilities.
    models: Mapping[str, ModelCapabilities]
    default_model: str | None = None
    needs_key: bool = True
    # Whether it runs remote tasks that cancel() can stop.
    cancellable: bool = True


class VideoProvider(Protocol):
    """Turns a prompt into a video file; probe() tells whether it can right now.

    A kind is built with its registry entry, ProviderConfig (kinds.py); what it knows without
    one, its KindInfo, is in catalog.py."""

    name: str

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        """The request this provider would make of the job, its options mapped to the model's
        nearest legal values, or InvalidOptions naming the field."""
        ...

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Writes the video to output, reporting progress and the remote task it started;
        ProviderError on failure. When progress raises JobCancelled, it cancels its remote task
        (so nobody pays for a video no one wants) and lets JobCancelled through."""
        ...

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Cancels a task this kind started (an earlier attempt's, whose worker died); a task
        already finished or gone is fine. ProviderError when the provider cannot be told."""
        ...

    def probe(self, timeout: float) -> None:
        """Returns when the provider answers within timeout seconds, without paying for a
        generation (an auth check, a model list, a task read); ProviderError otherwise."""
        ...
