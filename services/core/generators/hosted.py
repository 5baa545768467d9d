"""What the model-hosting kinds (fal, replicate) share: any model by its name, the job's
metadata mapped to that model's nearest legal values, and the model's own input written out.

A hosted model's input is its own JSON object. The kinds know how a few models spell the
common options (InputStyle); any other model gets the most common spelling. A job may add the
model's other fields in `metadata.modelInput`; they never replace the fields mapped from the
job (prompt, duration, aspect ratio, image, seed), which routing and cost rely on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from services.core.generators.base import InvalidOptions, VideoSpec
from services.core.generators.capabilities import RATIO, ModelCapabilities, fit, request_of
from services.core.generators.registry import ProviderConfig

# The job's own fields for the model's input, sent as they are.
MODEL_INPUT = "modelInput"
MAX_SEED = 2**32 - 1
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


def hosted_spec(config: ProviderConfig, prompt: str, metadata: Mapping[str, Any], *, model: str) -> VideoSpec:
    """The job's request of model on this entry: its nearest legal length and aspect ratio when
    the model's capabilities are known, the job's own otherwise; InvalidOptions names the field."""
    model = model or config.model
    if not model:
        raise InvalidOptions(f"metadata.model: {config.name} names no model to use")
    _check_types(metadata)
    request = request_of(metadata)
    duration, ratio = request.duration_seconds, request.aspect_label
    capabilities = config.capabilities_of(model)
    if capabilities is not None:
        chosen = fit(capabilities, request)
        if isinstance(chosen, str):
            raise InvalidOptions(
                f"{_field_of(chosen, metadata)}: {model} on {config.name} {chosen}; the job asks {request.describe()}"
            )
        # A model that makes any shape is asked for the job's own.
        duration, ratio = chosen.duration_seconds, chosen.aspect_ratio or request.aspect_label
    image = metadata.get("imageUrl")
    seed = metadata.get("seed")
    return VideoSpec(
        prompt=prompt,
        duration_seconds=duration,
        width=_pixels(metadata, "width"),
        height=_pixels(metadata, "height"),
        fps=0,
        model=model,
        aspect_ratio=ratio,
        image_url=image if isinstance(image, str) and image else None,
        seed=seed if isinstance(seed, int) else None,
        extra=dict(metadata.get(MODEL_INPUT) or {}),
    )


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


def _check_types(metadata: Mapping[str, Any]) -> None:
    """Values request_of() would quietly take as "not said" are refused, naming the field."""
    seconds = metadata.get("durationSeconds")
    if seconds is not None and (
        isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds <= 0
    ):
        raise InvalidOptions("metadata.durationSeconds must be a positive number of seconds")
    ratio = metadata.get("aspectRatio")
    if ratio is not None and not (isinstance(ratio, str) and RATIO.fullmatch(ratio)):
        raise InvalidOptions('metadata.aspectRatio must be a ratio such as "16:9"')
    image = metadata.get("imageUrl")
    if image is not None and not (isinstance(image, str) and image.startswith("https://") and len(image) <= 2048):
        raise InvalidOptions("metadata.imageUrl must be an https URL")
    seed = metadata.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise InvalidOptions(f"metadata.seed must be a whole number from 0 to {MAX_SEED}")
    extra = metadata.get(MODEL_INPUT)
    if extra is not None and not (isinstance(extra, dict) and all(isinstance(k, str) for k in extra)):
        raise InvalidOptions(f"metadata.{MODEL_INPUT} must be an object of the model's own input fields")


def _field_of(reason: str, metadata: Mapping[str, Any]) -> str:
    """The metadata field a fit() refusal is about."""
    if "image" in reason:
        return "metadata.imageUrl"
    if reason.endswith(" s"):
        return "metadata.durationSeconds"
    return "metadata.aspectRatio" if "aspectRatio" in metadata else "metadata.width/height"


def _pixels(metadata: Mapping[str, Any], name: str) -> int:
    """The job's width or height when it gives one (the model decides otherwise: 0)."""
    value = metadata.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 8192 else 0
