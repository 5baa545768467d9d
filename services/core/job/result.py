"""The stored video of a completed job, typed: checked once when a worker reports it, stored as
snake_case JSON in jobs.result, read back without guessing."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from services.core.errors import InvalidArgument

# A stored video: the job's id, its attempt when not the first, and a video extension.
STORAGE_KEY = re.compile(r"^(?P<job>[a-z0-9]{1,32})(?:-(?P<attempt>[1-9][0-9]?))?\.(?:mp4|webm|mov)$")


@dataclass(frozen=True)
class VideoResult:
    """Where a job's video is, what it holds, and the key it is stored under."""

    video_url: str
    content_type: str
    duration_seconds: float
    width: int
    height: int
    fps: float
    size_bytes: int
    storage_key: str
    codec: str = ""

    def checked(self, *, job_id: str, attempt: int | None) -> VideoResult:
        """This result, if a worker may report it for the job's attempt; InvalidArgument naming
        result.<field> otherwise. The key must be the job's own video of that attempt ("<job
        id>.mp4", "<job id>-<n>.mp4"), so that no job is completed with another's file."""
        if not self.video_url or len(self.video_url) > 2048:
            raise InvalidArgument("result.video_url", "must be 1-2048 characters")
        if not self.content_type or len(self.content_type) > 128:
            raise InvalidArgument("result.content_type", "must be 1-128 characters")
        for field, number in (("duration_seconds", self.duration_seconds), ("fps", self.fps)):
            if not (math.isfinite(number) and number > 0):
                raise InvalidArgument(f"result.{field}", "must be a positive number")
        for field, size in (("width", self.width), ("height", self.height)):
            if size <= 0:
                raise InvalidArgument(f"result.{field}", "must be positive")
        if self.size_bytes < 0:
            raise InvalidArgument("result.size_bytes", "must not be negative")
        if len(self.codec) > 32 or not self.codec.isprintable():
            raise InvalidArgument("result.codec", "must be at most 32 printable characters")
        _check_key(self.storage_key, job_id=job_id, attempt=attempt)
        if not self.video_url.endswith(f"/{self.storage_key}"):
            raise InvalidArgument("result.video_url", "must be the URL of result.storage_key")
        return self

    def to_stored(self) -> dict[str, Any]:
        """The JSON of jobs.result (without a codec nobody named)."""
        stored = asdict(self)
        if not self.codec:
            del stored["codec"]
        return stored

    @classmethod
    def from_stored(cls, value: Mapping[str, Any]) -> VideoResult:
        """A result as to_stored() wrote it."""
        return cls(
            video_url=str(value["video_url"]),
            content_type=str(value["content_type"]),
            duration_seconds=float(value["duration_seconds"]),
            width=int(value["width"]),
            height=int(value["height"]),
            fps=float(value["fps"]),
            size_bytes=int(value["size_bytes"]),
            storage_key=str(value["storage_key"]),
            codec=str(value.get("codec", "")),
        )


def _check_key(key: str, *, job_id: str, attempt: int | None) -> None:
    match = STORAGE_KEY.fullmatch(key)
    if match is None or match["job"] != job_id:
        raise InvalidArgument("result.storage_key", "must name the job's own video (<job id>[-<attempt>].<ext>)")
    named = int(match["attempt"] or 0)
    if attempt is not None and named != attempt:
        raise InvalidArgument("result.storage_key", f"must be the video of attempt {attempt}, not {named}")
