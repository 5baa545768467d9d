"""How a remote kind reads a job's options (already typed and checked by JobOptions.parse): mapped
to the chosen model's nearest legal values (capabilities.fit), or refused naming the metadata
field that asks what the model cannot make."""

from __future__ import annotations

import math
from dataclasses import dataclass

from services.core.generators.base import InvalidOptions, VideoSpec
from services.core.generators.capabilities import Fit, ModelCapabilities, VideoRequest, fit
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions


@dataclass(frozen=True)
class Fitted:
    """The model a job runs on, what it asked for, and the legal values it gets."""

    model: str
    capabilities: ModelCapabilities
    request: VideoRequest
    fit: Fit


def fitted(config: ProviderConfig, options: JobOptions, *, model: str = "") -> Fitted:
    """The job's options on model (the entry's default when empty), at the model's nearest legal
    values; InvalidOptions naming the metadata field that cannot be made."""
    model = model or config.model
    capabilities = config.capabilities_of(model)
    if capabilities is None or not config.supports(model):
        raise InvalidOptions(f"metadata.model: {config.name} has no model {model!r}")
    chosen = fit_or_refuse(capabilities, options, provider=config.name, model=model)
    return Fitted(model, capabilities, options.request, chosen)


def fit_or_refuse(capabilities: ModelCapabilities, options: JobOptions, *, provider: str, model: str) -> Fit:
    """The model's nearest legal values for the job, or InvalidOptions naming the field it cannot make."""
    request = options.request
    chosen = fit(capabilities, request)
    if isinstance(chosen, str):
        field = _field_of(chosen, options)
        raise InvalidOptions(f"metadata.{field}: {provider} ({model}) {chosen}, not {request.describe()}")
    return chosen


def hosted_spec(config: ProviderConfig, prompt: str, options: JobOptions, *, model: str) -> VideoSpec:
    """The job's request of a hosted model (fal, replicate) on this entry: its nearest legal length
    and aspect ratio when the model's capabilities are known, the job's own otherwise; the job's
    modelInput passes through as the model's other fields."""
    model = model or config.model
    if not model:
        raise InvalidOptions(f"metadata.model: {config.name} names no model to use")
    request = options.request
    duration, ratio = request.duration_seconds, request.aspect_label
    capabilities = config.capabilities_of(model)
    if capabilities is not None:
        chosen = fit_or_refuse(capabilities, options, provider=config.name, model=model)
        # A model that makes any shape is asked for the job's own.
        duration, ratio = chosen.duration_seconds, chosen.aspect_ratio or request.aspect_label
    return VideoSpec(
        prompt=prompt,
        duration_seconds=duration,
        width=options.width or 0,
        height=options.height or 0,
        fps=0,
        model=model,
        aspect_ratio=ratio,
        image_url=options.image_url,
        seed=options.seed,
        extra=dict(options.model_input),
    )


def within(name: str, value: float | None, low: int, high: int) -> int | None:
    """An option as the whole number a model takes within its bounds (None when unsaid), or
    InvalidOptions naming the field."""
    if value is None:
        return None
    if value != int(value) or not low <= value <= high:
        raise InvalidOptions(f"metadata.{name} must be a whole number from {low} to {high}")
    return int(value)


def whole_seconds(seconds: float, capabilities: ModelCapabilities) -> int:
    """A fitted length as the whole seconds providers take, kept within the model's range."""
    whole = math.floor(seconds + 0.5)
    if capabilities.durations:
        return whole
    return int(min(math.floor(capabilities.max_seconds), max(math.ceil(capabilities.min_seconds), whole)))


def _field_of(reason: str, options: JobOptions) -> str:
    """The metadata field a fit() refusal is about."""
    if "image" in reason:
        return "imageUrl"
    if reason.endswith(" s"):
        return "durationSeconds"
    return "aspectRatio" if options.aspect_ratio is not None else "width/height"
