"""The built-in provider `local`: renders a real H.264 MP4 from the prompt with PyAV.

Frames are animated colours seeded by the prompt, with the prompt's words scrolling across.
Same prompt and options, same bytes: the encoder runs single-threaded and bit-exact.
"""

from __future__ import annotations

import colorsys
import hashlib
from functools import cache
from pathlib import Path

import av
from av.codec.context import Flags
from PIL import Image, ImageDraw, ImageFont

from services.core.generators.base import (
    InvalidOptions,
    ProgressCallback,
    ProviderError,
    RenderedVideo,
    TaskCallback,
    VideoSpec,
)
from services.core.generators.catalog import LOCAL_MODEL as MODEL
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions

# Each option's bounds and its value when the job names none.
BOUNDS = {
    "durationSeconds": (1, 60, 4),
    "width": (64, 1920, 640),
    "height": (64, 1080, 360),
    "fps": (1, 60, 24),
}


def _option(name: str, value: float | None) -> float:
    low, high, default = BOUNDS[name]
    value = default if value is None else value
    if not low <= value <= high:
        raise InvalidOptions(f"metadata.{name} must be between {low} and {high}")
    return float(value)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


class LocalRenderer:
    """The `local` provider: no network, no credentials, a few seconds of real video."""

    content_type = "video/mp4"

    def __init__(self, config: ProviderConfig | None = None) -> None:
        self.name = config.name if config is not None else "local"

    def spec(self, prompt: str, options: JobOptions, *, model: str = "") -> VideoSpec:
        """The job's length, width, height (even) and fps within bounds, or their defaults."""
        width, height = int(_option("width", options.width)), int(_option("height", options.height))
        for name, size in (("width", width), ("height", height)):
            if size % 2:
                raise InvalidOptions(f"metadata.{name} must be an even number of pixels")
        return VideoSpec(
            prompt=prompt,
            duration_seconds=_option("durationSeconds", options.duration_seconds),
            width=width,
            height=height,
            fps=int(_option("fps", options.fps)),
            model=MODEL,
        )

    def probe(self, timeout: float) -> None:
        """The encoder is there and opens: that is all `local` needs."""
        try:
            av.codec.Codec("libx264", "w")
        except Exception as exc:
            raise ProviderError(f"libx264 is not available: {exc}") from exc

    def cancel(self, task_id: str, *, timeout: float) -> None:
        """Nothing runs anywhere but in the worker itself."""

    def generate(
        self, spec: VideoSpec, *, output: Path, progress: ProgressCallback, on_task: TaskCallback
    ) -> RenderedVideo:
        """Encodes every frame to output, calling progress after each one."""
        frames = max(1, round(spec.duration_seconds * spec.fps))
        scene = _Scene(spec)
        with av.open(str(output), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
            stream = container.add_stream(
                "libx264", rate=spec.fps, options={"preset": "veryfast", "crf": "26", "threads": "1"}
            )
            stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
            stream.codec_context.flags |= Flags.bitexact
            for index in range(frames):
                frame = av.VideoFrame.from_image(scene.draw(index, frames))  # type: ignore[no-untyped-call]
                container.mux(stream.encode(frame))
                progress((index + 1) / frames, "rendering")
            container.mux(stream.encode(None))
        return RenderedVideo(
            path=output,
            content_type=self.content_type,
            duration_seconds=frames / spec.fps,
            width=spec.width,
            height=spec.height,
            fps=float(spec.fps),
            model=MODEL,
            codec="h264",
        )


class _Scene:
    """The look of one prompt's video."""

    def __init__(self, spec: VideoSpec) -> None:
        digest = hashlib.sha256(spec.prompt.encode()).digest()
        self.spec = spec
        self.hue = digest[0] / 255
        self.speed = 0.2 + digest[1] / 255
        self.words = spec.prompt.split() or ["…"]
        self.font = _font(max(10, spec.height // 12))
        self.small = _font(max(8, spec.height // 24))

    def draw(self, index: int, frames: int) -> Image.Image:
        t = index / self.spec.fps
        hue = (self.hue + self.speed * t / 10) % 1
        top = tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.6, 0.9))
        bottom = tuple(int(c * 255) for c in colorsys.hsv_to_rgb((hue + 0.3) % 1, 0.7, 0.5))
        image = Image.new("RGB", (self.spec.width, self.spec.height), top)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, self.spec.height // 2, self.spec.width, self.spec.height), fill=bottom)
        word = self.words[int(t * 2) % len(self.words)]
        x = int((self.spec.width * (1 - (index / frames))) - self.spec.width * 0.25)
        draw.text((x, self.spec.height // 3), word, fill=(255, 255, 255), font=self.font)
        caption = " ".join(self.words)[:80]
        draw.text((8, self.spec.height - self.spec.height // 12), caption, fill=(240, 240, 240), font=self.small)
        draw.text((8, 8), f"{index + 1}/{frames}", fill=(255, 255, 255), font=self.small)
        return image
