"""Media storage behind one small interface; the local directory backend writes atomically."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from services.core.media_urls import MediaUrlSigner

if TYPE_CHECKING:
    from services.core.settings import CoreSettings

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


class LocalMediaStorage:
    """Videos as files under root; a partial file never shows under a stored name. With urls,
    clients get signed, expiring URLs of them (services/core/media_urls.py)."""

    def __init__(self, root: Path, *, url_prefix: str = "/media/", urls: MediaUrlSigner | None = None) -> None:
        self.root = root.resolve()
        self._partials = self.root / ".partial"
        self._url_prefix = url_prefix
        self.urls = urls

    def partial_path(self, key: str) -> Path:
        self._partials.mkdir(parents=True, exist_ok=True)
        return self._partials / f"{check_key(key)}.part"

    def store(self, partial: Path, key: str) -> StoredVideo:
        target = self.path(key)
        with open(partial, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
        return StoredVideo(
            key=key,
            url=f"{self._url_prefix}{key}",
            size_bytes=target.stat().st_size,
            content_type=content_type(key),
        )

    def delete(self, key: str) -> bool:
        existed = False
        for candidate in (self.path(key), self._partials / f"{key}.part"):
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
                existed = True
        return existed

    def fresh_url(self, key: str) -> str | None:
        # The stored URL is the bare path; the one a client gets is signed at this moment.
        if self.urls is None:
            return None
        return f"{self._url_prefix}{check_key(key)}?{self.urls.sign(key)}"

    def path(self, key: str) -> Path:
        """The file of a stored video, for serving it."""
        return self.root / check_key(key)


def create_storage(media_root: Path, settings: CoreSettings) -> MediaStorage:
    """The storage backend MEDIA_BACKEND chooses; media_root holds the videos (local) or only
    the videos being written (s3)."""
    if settings.media_backend == "s3":
        # Imported here: boto3 is slow to import and only the s3 backend needs it.
        from services.core.storage_s3 import S3MediaStorage

        return S3MediaStorage.from_settings(settings, scratch=media_root)
    return _local(media_root, settings)


def local_storage(media_root: Path, settings: CoreSettings) -> LocalMediaStorage | None:
    """The directory the gateway serves videos from: none when they live in an object store."""
    if settings.media_backend != "local":
        return None
    return _local(media_root, settings)


def _local(media_root: Path, settings: CoreSettings) -> LocalMediaStorage:
    return LocalMediaStorage(
        media_root, url_prefix=settings.media_url_prefix, urls=MediaUrlSigner.from_settings(settings)
    )
