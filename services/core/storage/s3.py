"""The S3-compatible media backend (AWS S3, MinIO, ...): the worker uploads, clients get presigned GETs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.core.settings import CoreSettings
from services.core.storage.base import StorageUnavailable, StoredVideo, check_key, content_type

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# Videos past this size go up in parts of this size, several at once (boto3's managed transfer).
MULTIPART_BYTES = 16 * 1024 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3MediaStorage:
    """Videos as objects `<prefix><key>` in one bucket; partial files stay on local disk until stored."""

    def __init__(
        self,
        *,
        client: S3Client,
        bucket: str,
        scratch: Path,
        presigner: S3Client | None = None,
        key_prefix: str = "",
        presign_seconds: int = 3600,
        multipart_bytes: int = MULTIPART_BYTES,
    ) -> None:
        self._client = client
        # Presigned URLs name the host clients use, which may differ from the services' (compose).
        self._presigner = presigner or client
        self.bucket = bucket
        self._prefix = key_prefix
        self._presign_seconds = presign_seconds
        self._partials = scratch.resolve() / ".partial"
        self._transfer = TransferConfig(multipart_threshold=multipart_bytes, multipart_chunksize=multipart_bytes)

    @classmethod
    def from_settings(cls, settings: CoreSettings, *, scratch: Path) -> S3MediaStorage:
        """The backend the S3_* settings describe."""
        secret = settings.s3_secret_access_key.get_secret_value()
        session = boto3.session.Session(
            aws_access_key_id=settings.s3_access_key_id or None,
            aws_secret_access_key=secret or None,
            region_name=settings.s3_region,
        )
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": settings.s3_addressing_style},
            connect_timeout=settings.s3_timeout,
            read_timeout=settings.s3_timeout,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        client = session.client("s3", endpoint_url=settings.s3_endpoint_url, config=config)
        public = settings.s3_public_endpoint_url
        presigner = None
        if public is not None and public != settings.s3_endpoint_url:
            presigner = session.client("s3", endpoint_url=public, config=config)
        return cls(
            client=client,
            presigner=presigner,
            bucket=settings.s3_bucket,
            scratch=scratch,
            key_prefix=settings.s3_key_prefix,
            presign_seconds=settings.s3_presign_seconds,
        )

    def __repr__(self) -> str:
        return f"S3MediaStorage(bucket={self.bucket!r}, prefix={self._prefix!r})"

    def object_key(self, key: str) -> str:
        """The name of key's object in the bucket."""
        return f"{self._prefix}{check_key(key)}"

    def partial_path(self, key: str) -> Path:
        self._partials.mkdir(parents=True, exist_ok=True)
        return self._partials / f"{check_key(key)}.part"

    def store(self, partial: Path, key: str) -> StoredVideo:
        name, kind = self.object_key(key), content_type(key)
        size = partial.stat().st_size
        try:
            # An object appears whole or not at all, a multipart one when its last part is in.
            self._client.upload_file(
                str(partial), self.bucket, name, ExtraArgs={"ContentType": kind}, Config=self._transfer
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"storing {name!r} in bucket {self.bucket!r} failed: {exc}") from exc
        partial.unlink(missing_ok=True)
        return StoredVideo(key=key, url=f"s3://{self.bucket}/{name}", size_bytes=size, content_type=kind)

    def delete(self, key: str) -> bool:
        name = self.object_key(key)
        (self._partials / f"{key}.part").unlink(missing_ok=True)
        try:
            existed = self._exists(name)
            if existed:
                self._client.delete_object(Bucket=self.bucket, Key=name)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"deleting {name!r} from bucket {self.bucket!r} failed: {exc}") from exc
        return existed

    def fresh_url(self, key: str) -> str | None:
        # Signing is local computation: no request to the store, but it needs credentials.
        name = self.object_key(key)
        try:
            return self._presigner.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": name}, ExpiresIn=self._presign_seconds
            )
        except BotoCoreError as exc:
            raise StorageUnavailable(f"signing a URL of {name!r} failed: {exc}") from exc

    def _exists(self, name: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise
        return True
