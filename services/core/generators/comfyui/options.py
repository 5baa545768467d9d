"""A job's options read for a ComfyUI workflow: its length from the entry's capabilities, its
size in multiples of 32, its fps, seed and input image, or InvalidOptions naming the field."""

from __future__ import annotations

import math

from services.core.generators.base import InvalidOptions, VideoSpec
from services.core.generators.capabilities import ModelCapabilities, ratio_value
from services.core.generators.comfyui.workflow import Workflow
from services.core.generators.spec_mapping import fit_or_refuse, within
from services.core.job.options import JobOptions

# Sizes are multiples of this (what video models' latents need: Wan 2.2 and LTX-Video use 32).
SIZE_STEP = 32
MAX_SIZE = 4096


def job_spec(
    prompt: str,
    options: JobOptions,
    *,
    provider: str,
    model: str,
    capabilities: ModelCapabilities,
    workflow: Workflow,
) -> VideoSpec:
    """The request for the workflow: the nearest legal length, the job's size (or its aspect
    ratio at the workflow's default number of pixels), fps and seed from the job or defaults."""
    fitted = fit_or_refuse(capabilities, options, provider=provider, model=model)
    width, height = _size(options, fitted.aspect_ratio or options.request.aspect_label, workflow)
    return VideoSpec(
        prompt=prompt,
        duration_seconds=fitted.duration_seconds,
        width=width,
        height=height,
        fps=within("fps", options.fps, 1, 120) or workflow.default("fps"),
        model=model,
        aspect_ratio=fitted.aspect_ratio or "",
        image_url=options.image_url,
        seed=options.seed,
    )


def _size(options: JobOptions, ratio: str, workflow: Workflow) -> tuple[int, int]:
    width = within("width", options.width, SIZE_STEP, MAX_SIZE)
    height = within("height", options.height, SIZE_STEP, MAX_SIZE)
    if (width is None) != (height is None):
        raise InvalidOptions("metadata.width and metadata.height go together")
    if width is None or height is None:
        width, height = workflow.default("width"), workflow.default("height")
        if ratio:
            # The workflow's default number of pixels, in the shape asked.
            area, shape = width * height, ratio_value(ratio)
            width, height = round(math.sqrt(area * shape)), round(math.sqrt(area / shape))
    return _step(width), _step(height)


def _step(pixels: float) -> int:
    return max(SIZE_STEP, min(MAX_SIZE, round(pixels / SIZE_STEP) * SIZE_STEP))
