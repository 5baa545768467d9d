"""A job's options: what its metadata asks of the video and of routing, parsed and checked in one
place. The jobs service refuses a create whose options are wrong (INVALID_ARGUMENT naming
`metadata.<field>`); the worker reads the same object back, and providers take it typed.

The metadata stays the client's JSON object (answered back as sent); these are the fields of it
that steer the job. Anything else in it is the client's own and passes through untouched.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from services.core.errors import InvalidArgument
from services.core.generators.capabilities import DEFAULT_SECONDS, RATIO, VideoRequest, ratio_value
from services.core.job.rules import PROVIDER_NAME
from services.core.queues import DEFAULT, HIGH_PRIORITY, LOW_PRIORITY

MAX_SECONDS = 3600
MAX_PIXELS = 8192
MAX_FPS = 240
MAX_SEED = 2**32 - 1
MAX_IMAGE_URL = 2048
MAX_TEXT = 2000
Priority = Literal["high", "default", "low"]
_QUEUES = {"high": HIGH_PRIORITY, "default": DEFAULT, "low": LOW_PRIORITY}


@dataclass(frozen=True)
class JobOptions:
    """The fields of a job's metadata that steer it, typed."""

    # "high" and "low" name their queues; anything else (or nothing) is the default queue.
    priority: Priority = "default"
    provider: str | None = None
    model: str | None = None
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None
    fps: float | None = None
    seed: int | None = None
    # An https URL of the first frame, for image-to-video.
    image_url: str | None = None
    negative_prompt: str | None = None
    inference_steps: int | None = None
    guidance_scale: float | None = None
    # A hosted model's other input fields (fal, Replicate), passed through as given.
    model_input: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, metadata: Mapping[str, Any]) -> JobOptions:
        """The options of a job's metadata; InvalidArgument naming metadata.<field> when one has
        the wrong type or is out of bounds."""
        read = _Reader(metadata)
        return cls(
            priority=_priority(metadata.get("priority")),
            provider=read.text("provider", pattern=PROVIDER_NAME, rule='a provider name such as "local"'),
            model=read.text("model", max_chars=128),
            duration_seconds=read.number("durationSeconds", high=MAX_SECONDS),
            width=read.whole("width", 1, MAX_PIXELS),
            height=read.whole("height", 1, MAX_PIXELS),
            aspect_ratio=read.text("aspectRatio", pattern=RATIO, rule='a ratio such as "16:9"'),
            fps=read.number("fps", high=MAX_FPS),
            seed=read.whole("seed", 0, MAX_SEED),
            image_url=read.https_url("imageUrl"),
            negative_prompt=read.text("negativePrompt", max_chars=MAX_TEXT),
            inference_steps=read.whole("numInferenceSteps", 1, 1000),
            guidance_scale=read.number("guidanceScale", high=100),
            model_input=read.object("modelInput"),
        )

    @property
    def queue(self) -> str:
        """The Celery queue the job goes to."""
        return _QUEUES[self.priority]

    @property
    def video_seconds(self) -> float:
        """The seconds of video asked (what the daily quota charges): the default when unsaid."""
        return self.duration_seconds or DEFAULT_SECONDS

    @property
    def request(self) -> VideoRequest:
        """What routing matches against the providers' capabilities."""
        ratio, label = None, ""
        if self.aspect_ratio is not None:
            ratio, label = ratio_value(self.aspect_ratio), self.aspect_ratio
        elif self.width is not None and self.height is not None:
            divisor = math.gcd(self.width, self.height)
            ratio, label = self.width / self.height, f"{self.width // divisor}:{self.height // divisor}"
        return VideoRequest(
            duration_seconds=self.video_seconds,
            aspect_ratio=ratio,
            aspect_label=label,
            image_input=self.image_url is not None,
        )


def _priority(value: Any) -> Priority:
    return "high" if value == "high" else "low" if value == "low" else "default"


class _Reader:
    """Reads one field at a time, refusing a wrong one by its metadata name."""

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        self._metadata = metadata

    def _refuse(self, name: str, rule: str) -> InvalidArgument:
        return InvalidArgument(f"metadata.{name}", f"must be {rule}")

    def number(self, name: str, *, high: float) -> float | None:
        value = self._metadata.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._refuse(name, "a number")
        if not 0 < value <= high:
            raise self._refuse(name, f"more than 0 and at most {high:g}")
        return float(value)

    def whole(self, name: str, low: int, high: int) -> int | None:
        value = self._metadata.get(name)
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._refuse(name, f"a whole number from {low} to {high}")
        return value

    def text(self, name: str, *, max_chars: int = MAX_TEXT, pattern: Any = None, rule: str = "") -> str | None:
        value = self._metadata.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value or len(value) > max_chars or not value.isprintable():
            raise self._refuse(name, rule or f"text of 1-{max_chars} printable characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self._refuse(name, rule)
        return value

    def https_url(self, name: str) -> str | None:
        value = self._metadata.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not value.startswith("https://") or len(value) > MAX_IMAGE_URL:
            raise self._refuse(name, f"an https URL of at most {MAX_IMAGE_URL} characters")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise self._refuse(name, "an https URL without spaces or control characters")
        return value

    def object(self, name: str) -> Mapping[str, Any]:
        value = self._metadata.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._refuse(name, "an object of the model's own input fields")
        return value
