"""What a provider's model can make, what a job asks for, and how one maps onto the other.

Routing (the providers service) and each provider kind (the worker) read the same rules: a
job's `durationSeconds`, `aspectRatio` (or `width`/`height`) and `imageUrl` go to a model's
nearest legal values, and a model that is too far from them cannot take the job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

# A job that names no length asks for this many seconds (as the quotas count it).
DEFAULT_SECONDS = 4.0
# A legal length within this many seconds of the one asked makes the video asked.
DURATION_TOLERANCE = 1.0
# A legal aspect ratio within this share of the one asked (on a log scale) makes it.
RATIO_TOLERANCE = 0.05
RATIO = re.compile(r"^([1-9][0-9]{0,4}):([1-9][0-9]{0,4})$")
Seconds = Annotated[float, Field(gt=0, le=3600)]


def ratio_value(label: str) -> float:
    """16:9 -> 1.777..."""
    match = RATIO.fullmatch(label)
    if match is None:
        raise ValueError(f"{label!r} is not an aspect ratio such as 16:9")
    return int(match[1]) / int(match[2])


class ModelCapabilities(BaseModel):
    """What one model makes: its lengths, aspect ratios, inputs and price."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # The lengths it makes: these exactly when listed, else any length from min to max.
    durations: list[Seconds] = []
    min_seconds: Seconds = 1.0
    max_seconds: Seconds = 60.0
    # "16:9", "9:16", ...; empty means any shape.
    aspect_ratios: list[Annotated[str, Field(pattern=RATIO.pattern)]] = []
    text_to_video: bool = True
    image_to_video: bool = False
    # US dollars per second of video, when the provider prices by length.
    price_per_second: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelCapabilities:
        if self.min_seconds > self.max_seconds:
            raise ValueError("min_seconds must not be above max_seconds")
        if not (self.text_to_video or self.image_to_video):
            raise ValueError("a model makes video from text, from an image, or both")
        return self

    def nearest_duration(self, seconds: float) -> float:
        """The legal length closest to seconds (the longer one on a tie)."""
        if self.durations:
            return min(sorted(self.durations, reverse=True), key=lambda legal: abs(legal - seconds))
        return min(self.max_seconds, max(self.min_seconds, seconds))

    def nearest_ratio(self, ratio: float) -> str | None:
        """The legal aspect ratio closest to ratio (None when any shape is legal)."""
        if not self.aspect_ratios:
            return None
        return min(self.aspect_ratios, key=lambda label: abs(math.log(ratio_value(label) / ratio)))

    def length_label(self) -> str:
        """Its lengths for people: "5 or 10 s", "2-10 s"."""
        if self.durations:
            values = [f"{d:g}" for d in sorted(self.durations)]
            return (", ".join(values[:-1]) + " or " + values[-1] if len(values) > 1 else values[0]) + " s"
        return f"{self.min_seconds:g}-{self.max_seconds:g} s"


@dataclass(frozen=True)
class VideoRequest:
    """What a job asks for (JobOptions.request reads it from the job's options)."""

    duration_seconds: float = DEFAULT_SECONDS
    # width / height; None: any shape.
    aspect_ratio: float | None = None
    aspect_label: str = ""
    image_input: bool = False

    def describe(self) -> str:
        """ "a 10 s 16:9 video from an image", for messages."""
        shape = f" {self.aspect_label}" if self.aspect_label else ""
        source = "from an image" if self.image_input else "from text"
        return f"a {self.duration_seconds:g} s{shape} video {source}"


@dataclass(frozen=True)
class Fit:
    """The legal values a model would use for a request."""

    duration_seconds: float
    aspect_ratio: str | None


def fit(capabilities: ModelCapabilities, request: VideoRequest) -> Fit | str:
    """The model's nearest legal values for the request, or why it cannot make it."""
    if request.image_input and not capabilities.image_to_video:
        return "takes no input image"
    if not request.image_input and not capabilities.text_to_video:
        return "needs an input image"
    duration = capabilities.nearest_duration(request.duration_seconds)
    if abs(duration - request.duration_seconds) > DURATION_TOLERANCE:
        return f"makes {capabilities.length_label()}"
    ratio = None
    if request.aspect_ratio is not None:
        ratio = capabilities.nearest_ratio(request.aspect_ratio)
        if ratio is not None and abs(math.log(ratio_value(ratio) / request.aspect_ratio)) > RATIO_TOLERANCE:
            return f"makes {', '.join(capabilities.aspect_ratios)}"
    return Fit(duration_seconds=duration, aspect_ratio=ratio)


def estimated_cost(capabilities: ModelCapabilities | None, seconds: float, per_request: float) -> float:
    """US dollars for a video of seconds: the price per second when the model has one."""
    if capabilities is not None and capabilities.price_per_second is not None:
        return round(capabilities.price_per_second * seconds, 6)
    return per_request
