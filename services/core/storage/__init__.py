"""Where finished videos are kept: a local directory (local.py) or an S3 bucket (s3.py), behind
the MediaStorage interface of base.py."""

from __future__ import annotations

from pathlib import Path

from services.core.settings import CoreSettings
from services.core.storage.base import MediaStorage
from services.core.storage.local import local_media


def create_storage(media_root: Path, settings: CoreSettings) -> MediaStorage:
    """The storage backend MEDIA_BACKEND chooses; media_root holds the videos (local) or only
    the videos being written (s3)."""
    if settings.media_backend == "s3":
        # Imported here: boto3 is slow to import and only the s3 backend needs it.
        from services.core.storage.s3 import S3MediaStorage

        return S3MediaStorage.from_settings(settings, scratch=media_root)
    return local_media(media_root, settings)
