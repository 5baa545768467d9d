"""What the model-hosting kinds (fal, replicate) share: any model by its name, and the model's own
input written out from the job's options (spec_mapping.hosted_spec maps them to the model).

A hosted model's input is its own JSON object. The kinds know how a few models spell the
common options (InputStyle); any other model gets the most common spelling. A job may add the
model's other fields in `metadata.modelInput`; they never replace the fields mapped from the
job (prompt, duration, aspect ratio, image, seed), which routing and cost rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.core.generators.base import VideoSpec
from services.core.generators.capabilities import ModelCapabilities

# A remote task the kind stops (cancelled job, timeout) gets this long to be told.
CANCEL_SECONDS = 5.0


def whole_seconds(seconds: float) -> int:
    """8.0 -> 8 (a JSON integer)."""
    return round(seconds)


def seconds_text(seconds: float) -> str:
    """8.0 -> "8"."""
    return str(whole_seconds(seconds))


def seconds_suffixed(seconds: float) -> str:
    """8.0 -> "8s"."""
    return f"{whole_seconds(seconds)}s"


@dataclass(frozen=True)
class InputStyle:
    """How one hosted model spells the common options in its input."""

    duration: Callable[[float], Any] = seconds_text
    image_field: str = "image_url"
    # False: the model takes no aspect ratio (its video takes the shape of its image).
    aspect_ratio: bool = True
    seed: bool = True
    # Fields the kind always sends to this model (a job's modelInput may change them).
    fixed: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostedModel:
    """A model a hosting kind knows: what it makes and costs, and how its input is spelled."""

    capabilities: ModelCapabilities
    style: InputStyle


def model_input(spec: VideoSpec, style: InputStyle) -> dict[str, Any]:
    """The model's input: its fixed fields, the job's modelInput, then the mapped fields."""
    body: dict[str, Any] = {**style.fixed, **spec.extra, "prompt": spec.prompt}
    body["duration"] = style.duration(spec.duration_seconds)
    if spec.aspect_ratio and style.aspect_ratio:
        body["aspect_ratio"] = spec.aspect_ratio
    if spec.image_url:
        body[style.image_field] = spec.image_url
    if spec.seed is not None and style.seed:
        body["seed"] = spec.seed
    return body
