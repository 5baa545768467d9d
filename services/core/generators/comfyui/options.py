"""A job's metadata read for a ComfyUI workflow: its length from the entry's capabilities, its
size in multiples of 32, its fps, seed and input image, or InvalidOptions naming the field."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from services.core.generators.base import InvalidOptions, VideoSpec
from services.core.generators.capabilities import ModelCapabilities, fit, ratio_value, request_of
from services.core.generators.comfyui.workflow import Workflow

# Sizes are multiples of this (what video models' latents need: Wan 2.2 and LTX-Video use 32).
SIZE_STEP = 32
MAX_SIZE = 4096


def job_spec(
    prompt: str,
    metadata: Mapping[str, Any],
    *,
    provider: str,
    model: str,
    capabilities: ModelCapabilities,
    workflow: Workflow,
) -> VideoSpec:
    """The request for the workflow: the nearest legal length, the job's size (or its aspect
    ratio at the workflow's default number of pixels), fps and seed from metadata or defaults."""
    duration = metadata.get("durationSeconds")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float)):
        raise InvalidOptions("metadata.durationSeconds must be a number of seconds")
    request = request_of(metadata)
    fitted = fit(capabilities, request)
    if isinstance(fitted, str):
        raise InvalidOptions(f"metadata.{_field_of(fitted)}: {provider} ({model}) {fitted}, not {request.describe()}")
    width, height = _size(metadata, fitted.aspect_ratio or request.aspect_label, workflow)
    image = str(metadata["imageUrl"]) if request.image_input else None
    if image is not None and not image.startswith("https://"):
        raise InvalidOptions("metadata.imageUrl must be an https URL")
    return VideoSpec(
        prompt=prompt,
        duration_seconds=fitted.duration_seconds,
        width=width,
        height=height,
        fps=_whole(metadata, "fps", 1, 120) or workflow.default("fps"),
        model=model,
        aspect_ratio=fitted.aspect_ratio or "",
        image_url=image,
        seed=_whole(metadata, "seed", 0, 2**64 - 1),
    )


def _size(metadata: Mapping[str, Any], ratio: str, workflow: Workflow) -> tuple[int, int]:
    width, height = _whole(metadata, "width", SIZE_STEP, MAX_SIZE), _whole(metadata, "height", SIZE_STEP, MAX_SIZE)
    if (width is None) != (height is None):
        raise InvalidOptions("metadata.width and metadata.height go together")
    if width is None or height is None:
        width, height = workflow.default("width"), workflow.default("height")
        if ratio:
            # The workflow's default number of pixels, in the shape asked.
            area, shape = width * height, ratio_value(ratio)
            width, height = round(math.sqrt(area * shape)), round(math.sqrt(area / shape))
    return _step(width), _step(height)


def _field_of(reason: str) -> str:
    """The metadata field a reason of capabilities.fit is about."""
    if "image" in reason:
        return "imageUrl"
    return "durationSeconds" if reason.endswith(" s") else "aspectRatio"


def _whole(metadata: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = metadata.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOptions(f"metadata.{name} must be a whole number from {low} to {high}")
    return value


def _step(pixels: float) -> int:
    return max(SIZE_STEP, min(MAX_SIZE, round(pixels / SIZE_STEP) * SIZE_STEP))
