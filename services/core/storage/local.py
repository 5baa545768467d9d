"""Videos as files in a local directory, written atomically."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from services.core.media_urls import MediaUrlSigner
from services.core.settings import CoreSettings
from services.core.storage.base import StoredVideo, check_key, content_type


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


def local_storage(media_root: Path, settings: CoreSettings) -> LocalMediaStorage | None:
    """The directory the gateway serves videos from: none when they live in an object store."""
    if settings.media_backend != "local":
        return None
    return local_media(media_root, settings)


def local_media(media_root: Path, settings: CoreSettings) -> LocalMediaStorage:
    """The local backend with the media settings: URL prefix and, when set, URL signing."""
    return LocalMediaStorage(
        media_root, url_prefix=settings.media_url_prefix, urls=MediaUrlSigner.from_settings(settings)
    )
