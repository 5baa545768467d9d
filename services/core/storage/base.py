"""The storage interface every backend implements, and the rules of a storage key."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,127}\.(mp4|webm|mov)")
CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime"}


class InvalidStorageKey(ValueError):
    """A key that could escape the storage root or names no video."""


class StorageUnavailable(OSError):
    """The object store could not be reached, refused the request, or cannot sign URLs."""


@dataclass(frozen=True)
class StoredVideo:
    """Where a stored video is and how big it is."""

    key: str
    url: str
    size_bytes: int
    content_type: str


class MediaStorage(Protocol):
    """Stores finished videos; `partial_path` is where a video is written before it is stored."""

    def partial_path(self, key: str) -> Path:
        """A scratch file for key, on the same file system as the stored videos."""
        ...

    def store(self, partial: Path, key: str) -> StoredVideo:
        """Makes the finished partial file the stored video of key, atomically."""
        ...

    def delete(self, key: str) -> bool:
        """Removes the stored video (and any partial file) of key; whether one existed."""
        ...

    def fresh_url(self, key: str) -> str | None:
        """A new time-limited URL of key's video, or None when the URL stored with the job is the one to give."""
        ...


def check_key(key: str) -> str:
    """key, or InvalidStorageKey."""
    if not _KEY.fullmatch(key):
        raise InvalidStorageKey(f"invalid storage key {key!r}")
    return key


def content_type(key: str) -> str:
    """The content type of a (checked) key's video, from its extension."""
    return CONTENT_TYPES[check_key(key).rsplit(".", 1)[1]]
