"""The S3 media backend against moto's standalone S3 server: storing, presigning, deleting, settings."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest

from services.core.settings import CoreSettings, load_settings
from services.core.storage import create_storage
from services.core.storage.base import InvalidStorageKey, StorageUnavailable
from services.core.storage.s3 import S3MediaStorage
from services.jobs.server import start_jobs_server
from tests.conftest import jobs_settings, wait_serving
from tests.support.factories import create_job, processing_job, video_result
from tests.support.internal import jobs_clients
from tests.support.processes import free_port
from tests.support.s3 import SECRET_ACCESS_KEY, object_keys, s3_client, s3_settings
from tests.support.stack import StackFactory
from videogen.v1 import jobs_pb2, lifecycle_pb2

MIB = 1024 * 1024


def storage(endpoint: str, bucket: str, scratch: Path, **overrides: Any) -> S3MediaStorage:
    """The backend create_storage builds from the settings of the test server."""
    settings = CoreSettings(_env_file=None, **s3_settings(endpoint, bucket, **overrides))
    built = create_storage(scratch, settings)
    assert isinstance(built, S3MediaStorage)
    return built


def written(backend: S3MediaStorage, key: str, content: bytes) -> Path:
    """A partial file of key holding content, as the worker leaves it before store()."""
    partial = backend.partial_path(key)
    partial.write_bytes(content)
    return partial


async def until_expired(url: str) -> None:
    """Waits until a presigned URL has expired (X-Amz-Date + X-Amz-Expires, and a margin): only
    the passing of time brings that."""
    query = parse_qs(urlsplit(url).query)
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    expiry = signed.timestamp() + int(query["X-Amz-Expires"][0])
    await asyncio.sleep(max(0.0, expiry - time.time()) + 0.5)


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url)


async def test_a_stored_video_is_an_object_whose_presigned_url_answers_its_bytes(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    backend = storage(s3_endpoint, s3_bucket, tmp_path, s3_key_prefix="videos/")
    content = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64
    partial = written(backend, "abc.mp4", content)

    stored = backend.store(partial, "abc.mp4")
    url = backend.fresh_url("abc.mp4")
    answer = await fetch(url or "")

    assert (stored.key, stored.size_bytes, stored.content_type) == ("abc.mp4", len(content), "video/mp4")
    assert stored.url == f"s3://{s3_bucket}/videos/abc.mp4"
    assert not partial.exists()
    assert object_keys(s3_endpoint, s3_bucket) == {"videos/abc.mp4"}
    assert url is not None and url.startswith(f"{s3_endpoint}/{s3_bucket}/videos/abc.mp4?")
    assert "X-Amz-Expires=3600" in url and "X-Amz-Signature=" in url
    assert answer.status_code == 200
    assert answer.content == content
    assert answer.headers["content-type"] == "video/mp4"


async def test_the_object_carries_the_content_type_of_its_extension(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    backend = storage(s3_endpoint, s3_bucket, tmp_path)
    backend.store(written(backend, "clip.webm", b"webm bytes"), "clip.webm")

    head = s3_client(s3_endpoint).head_object(Bucket=s3_bucket, Key="clip.webm")
    answer = await fetch(backend.fresh_url("clip.webm") or "")

    assert head["ContentType"] == "video/webm"
    assert answer.headers["content-type"] == "video/webm"


def test_a_big_video_goes_up_in_parts(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    backend = S3MediaStorage(
        client=s3_client(s3_endpoint),
        bucket=s3_bucket,
        scratch=tmp_path,
        multipart_bytes=5 * MIB,
    )
    content = bytes(range(256)) * (11 * MIB // 256)

    backend.store(written(backend, "big.mp4", content), "big.mp4")
    head = s3_client(s3_endpoint).head_object(Bucket=s3_bucket, Key="big.mp4")
    body = s3_client(s3_endpoint).get_object(Bucket=s3_bucket, Key="big.mp4")["Body"].read()

    # A multipart object's ETag ends in the number of its parts: 5 + 5 + 1 MiB.
    assert head["ETag"].strip('"').endswith("-3")
    assert body == content


def test_delete_removes_the_object_and_says_whether_there_was_one(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    backend = storage(s3_endpoint, s3_bucket, tmp_path)
    backend.store(written(backend, "gone.mp4", b"video"), "gone.mp4")
    backend.store(written(backend, "kept.mp4", b"video"), "kept.mp4")

    assert backend.delete("gone.mp4") is True
    assert object_keys(s3_endpoint, s3_bucket) == {"kept.mp4"}
    assert backend.delete("gone.mp4") is False


async def test_an_expired_presigned_url_is_refused(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    backend = storage(s3_endpoint, s3_bucket, tmp_path, s3_presign_seconds=3)
    backend.store(written(backend, "brief.mp4", b"video"), "brief.mp4")
    url = backend.fresh_url("brief.mp4") or ""

    fresh = await fetch(url)
    await until_expired(url)
    expired = await fetch(url)

    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["3"]
    assert fresh.status_code == 200
    assert expired.status_code == 403
    assert b"Request has expired" in expired.content


async def test_presigned_urls_name_the_public_endpoint(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    # The services reach the store at 127.0.0.1, clients by another name (as in compose).
    public = s3_endpoint.replace("127.0.0.1", "localhost")
    backend = storage(s3_endpoint, s3_bucket, tmp_path, s3_public_endpoint_url=public)
    backend.store(written(backend, "pub.mp4", b"public video"), "pub.mp4")

    url = backend.fresh_url("pub.mp4") or ""

    assert url.startswith(f"{public}/{s3_bucket}/pub.mp4?")
    assert (await fetch(url)).content == b"public video"


def test_an_unreachable_store_fails_as_storage_unavailable(tmp_path: Path) -> None:
    backend = storage(f"http://127.0.0.1:{free_port()}", "nowhere", tmp_path, s3_timeout=1)
    partial = written(backend, "lost.mp4", b"video")

    with pytest.raises(StorageUnavailable, match="nowhere"):
        backend.store(partial, "lost.mp4")
    # The partial file stays for the worker to clean up (it deletes it after every attempt).
    assert partial.exists()
    # An OSError, as the jobs service and the retention sweep expect of a store that is down.
    with pytest.raises(OSError, match="nowhere"):
        backend.delete("lost.mp4")


@pytest.fixture
def no_default_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3's credential chain finds nothing: no AWS_* keys, no files, no instance metadata."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_default_credentials")
def test_a_store_without_credentials_cannot_sign_and_says_so(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    backend = storage(s3_endpoint, s3_bucket, tmp_path, s3_access_key_id="", s3_secret_access_key="")

    with pytest.raises(StorageUnavailable, match="credentials"):
        backend.fresh_url("abc.mp4")


@pytest.mark.usefixtures("no_default_credentials")
async def test_a_job_whose_url_cannot_be_signed_is_unavailable_not_a_dead_url(
    database_url: str, s3_endpoint: str, s3_bucket: str
) -> None:
    unsigned = s3_settings(s3_endpoint, s3_bucket, s3_access_key_id="", s3_secret_access_key="")
    server = await start_jobs_server(jobs_settings(**unsigned), database_url=database_url, address="127.0.0.1:0")
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
            jobs_clients(server.port) as clients,
        ):
            await wait_serving(channel)
            jobs, lifecycle = clients.jobs, clients.lifecycle
            job = await processing_job(jobs, lifecycle)
            result = video_result(job.id, video_url=f"s3://{s3_bucket}/{job.id}.mp4")
            request = lifecycle_pb2.CompleteJobRequest(id=job.id, result=result, used_provider="local", used_model="m")

            completed = await lifecycle.CompleteJob(request)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    finally:
        await server.stop(0)

    # The worker's own answer never depends on signing.
    assert completed.result.video_url == f"s3://{s3_bucket}/{job.id}.mp4"
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "media storage" in (refused.value.details() or "")


def test_keys_are_checked_before_any_request(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    backend = storage(s3_endpoint, s3_bucket, tmp_path)

    for key in ("../escape.mp4", "a/b.mp4", "noext", "UPPER.mp4"):
        with pytest.raises(InvalidStorageKey):
            backend.fresh_url(key)
        with pytest.raises(InvalidStorageKey):
            backend.delete(key)


def test_the_secret_key_shows_in_no_repr(s3_endpoint: str, s3_bucket: str, tmp_path: Path) -> None:
    settings = CoreSettings(_env_file=None, **s3_settings(s3_endpoint, s3_bucket))
    backend = create_storage(tmp_path, settings)

    assert SECRET_ACCESS_KEY not in repr(settings)
    assert SECRET_ACCESS_KEY not in str(settings.model_dump())
    assert SECRET_ACCESS_KEY not in repr(backend)
    assert SECRET_ACCESS_KEY not in (backend.fresh_url("abc.mp4") or "")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MEDIA_BACKEND": "s3"}, "S3_BUCKET must be set when MEDIA_BACKEND=s3"),
        ({"MEDIA_BACKEND": "s3", "S3_BUCKET": "videos", "S3_ACCESS_KEY_ID": "id"}, "set together"),
        ({"MEDIA_BACKEND": "s3", "S3_BUCKET": "Not_A_Bucket"}, "S3_BUCKET:"),
        ({"S3_ENDPOINT_URL": "minio:9000"}, "S3_ENDPOINT_URL: must be an http(s) URL"),
        ({"S3_PUBLIC_ENDPOINT_URL": "ftp://files"}, "S3_PUBLIC_ENDPOINT_URL: must be an http(s) URL"),
        ({"S3_PRESIGN_SECONDS": "0"}, "S3_PRESIGN_SECONDS:"),
        ({"S3_ADDRESSING_STYLE": "sideways"}, "S3_ADDRESSING_STYLE:"),
        ({"MEDIA_BACKEND": "gcs"}, "MEDIA_BACKEND:"),
        (
            {
                "APP_ENV": "production",
                "SECRET_KEY": "real-secret",
                "API_KEY": "real-key",
                "MEDIA_BACKEND": "s3",
                "S3_BUCKET": "videos",
                "S3_ACCESS_KEY_ID": "id",
                "S3_SECRET_ACCESS_KEY": "change-me-s3-secret",
            },
            "S3_SECRET_ACCESS_KEY must be set to a real secret",
        ),
    ],
)
def test_a_bad_s3_setting_stops_the_process_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as exited:
        load_settings(CoreSettings)

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "change-me-s3-secret" not in err


def test_the_s3_settings_of_a_store_without_keys_use_the_default_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_BACKEND", "s3")
    monkeypatch.setenv("S3_BUCKET", "videos")
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://minio:9000/")

    settings = CoreSettings(_env_file=None)

    assert (settings.media_backend, settings.s3_bucket, settings.s3_access_key_id) == ("s3", "videos", "")
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_public_endpoint_url is None


# --- Through the worker and the jobs service (acceptance 3) ---


def stack_options(endpoint: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    """start_stack's options for jobs service and worker both on the S3 backend."""
    options = s3_settings(endpoint, bucket, **overrides)
    return {"jobs": options, **options}


async def test_a_completed_jobs_presigned_url_downloads_its_video_and_deleting_the_job_deletes_it(
    start_stack: StackFactory, s3_endpoint: str, s3_bucket: str
) -> None:
    stack = await start_stack(**stack_options(s3_endpoint, s3_bucket))
    job = await create_job(stack.jobs, metadata={"provider": "local"})

    done = await stack.wait_for(job.id)
    result = done.result
    downloaded = await fetch(result.video_url)
    stored = s3_client(s3_endpoint).get_object(Bucket=s3_bucket, Key=result.storage_key)

    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED, done.error_message
    assert object_keys(s3_endpoint, s3_bucket) == {result.storage_key}
    assert result.video_url.startswith(f"{s3_endpoint}/{s3_bucket}/{result.storage_key}?X-Amz-")
    assert downloaded.status_code == 200
    assert downloaded.content == stored["Body"].read()
    assert len(downloaded.content) == result.size_bytes
    assert downloaded.content[4:8] == b"ftyp"  # an MP4 the worker rendered
    assert stored["ContentType"] == result.content_type == "video/mp4"
    assert not any(stack.media.rglob("*.part")), "the worker left its partial file behind"

    await stack.jobs.DeleteJob(jobs_pb2.DeleteJobRequest(id=job.id))

    assert object_keys(s3_endpoint, s3_bucket) == set()
    assert (await fetch(result.video_url)).status_code == 404
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_every_answer_carries_a_fresh_url_so_an_old_expired_one_never_sticks(
    start_stack: StackFactory, s3_endpoint: str, s3_bucket: str
) -> None:
    stack = await start_stack(**stack_options(s3_endpoint, s3_bucket, s3_presign_seconds=3))
    job = await create_job(stack.jobs, metadata={"provider": "local"})
    first = (await stack.wait_for(job.id)).result.video_url

    await until_expired(first)
    again = (await stack.jobs.GetJob(jobs_pb2.GetJobRequest(id=job.id))).result.video_url
    listed = await stack.jobs.ListJobs(jobs_pb2.ListJobsRequest(user_id=job.user_id))

    assert (await fetch(first)).status_code == 403
    assert again != first
    assert (await fetch(again)).status_code == 200
    assert (await fetch(listed.jobs[0].result.video_url)).status_code == 200


async def test_a_late_watcher_gets_the_final_state_with_a_working_url(
    start_stack: StackFactory, s3_endpoint: str, s3_bucket: str
) -> None:
    stack = await start_stack(**stack_options(s3_endpoint, s3_bucket))
    job = await create_job(stack.jobs, metadata={"provider": "local"})
    await stack.wait_for(job.id)

    events = [event async for event in stack.jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id))]

    assert [event.type for event in events] == ["job.completed"]
    url = events[0].job.result.video_url
    assert url.startswith(f"{s3_endpoint}/{s3_bucket}/")
    assert (await fetch(url)).status_code == 200
