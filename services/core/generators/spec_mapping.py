"""How a remote kind reads a job's metadata: the options checked (a wrong type names its field),
then mapped to the chosen model's nearest legal values (capabilities.fit), or refused naming the
field that asks what the model cannot make."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.core.generators.base import InvalidOptions
from services.core.generators.capabilities import RATIO, Fit, ModelCapabilities, VideoRequest, fit, request_of
from services.core.generators.registry import ProviderConfig

# Providers fetch the first frame themselves: an https URL of a sane length (Runway's limit).
MAX_IMAGE_URL = 2048
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Fitted:
    """The model a job runs on, what it asked for, and the legal values it gets."""

    model: str
    capabilities: ModelCapabilities
    request: VideoRequest
    fit: Fit
    image_url: str | None
    seed: int | None


def fitted(config: ProviderConfig, metadata: Mapping[str, Any], *, model: str = "") -> Fitted:
    """The job's options on model (the entry's default when empty), at the model's nearest legal
    values; InvalidOptions naming the metadata field that is wrong or cannot be made."""
    check_types(metadata)
    model = model or config.model
    capabilities = config.capabilities_of(model)
    if capabilities is None or not config.supports(model):
        raise InvalidOptions(f"metadata.model: {config.name} has no model {model!r}")
    request = request_of(metadata)
    chosen = fit(capabilities, request)
    if isinstance(chosen, str):
        raise InvalidOptions(
            f"metadata.{_field_of(chosen)}: {config.name} ({model}) {chosen}, not {request.describe()}"
        )
    image = metadata.get("imageUrl") or None
    seed = metadata.get("seed")
    return Fitted(model, capabilities, request, chosen, image, seed)


def check_types(metadata: Mapping[str, Any]) -> None:
    """InvalidOptions naming the field when an option a remote kind reads has the wrong type."""
    seconds = metadata.get("durationSeconds")
    if seconds is not None and not _positive(seconds):
        raise InvalidOptions("metadata.durationSeconds must be a positive number of seconds")
    label = metadata.get("aspectRatio")
    if label is not None and not (isinstance(label, str) and RATIO.fullmatch(label)):
        raise InvalidOptions('metadata.aspectRatio must be a ratio such as "16:9"')
    for name in ("width", "height"):
        value = metadata.get(name)
        if value is not None and not _positive(value):
            raise InvalidOptions(f"metadata.{name} must be a positive number of pixels")
    image = metadata.get("imageUrl")
    if image is not None and not (
        isinstance(image, str) and image.startswith("https://") and len(image) <= MAX_IMAGE_URL
    ):
        raise InvalidOptions(f"metadata.imageUrl must be an https URL of at most {MAX_IMAGE_URL} characters")
    seed = metadata.get("seed")
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED):
        raise InvalidOptions(f"metadata.seed must be a whole number from 0 to {MAX_SEED}")


def whole_seconds(seconds: float, capabilities: ModelCapabilities) -> int:
    """A fitted length as the whole seconds providers take, kept within the model's range."""
    whole = math.floor(seconds + 0.5)
    if capabilities.durations:
        return whole
    return int(min(math.floor(capabilities.max_seconds), max(math.ceil(capabilities.min_seconds), whole)))


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _field_of(reason: str) -> str:
    """The metadata field a fit() refusal is about."""
    if "image" in reason:
        return "imageUrl"
    return "durationSeconds" if reason.endswith(" s") else "aspectRatio"
