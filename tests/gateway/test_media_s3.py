"""REST through the edge with MEDIA_BACKEND=s3: videoUrl is a presigned URL to moto's S3 server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.gateway.conftest import GatewayFactory
from tests.support.s3 import object_keys, s3_client, s3_settings


async def wait_completed(client: httpx.AsyncClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """Polls the job until it is completed or failed."""
    async with asyncio.timeout(timeout):
        while True:
            job: dict[str, Any] = (await client.get(f"/api/v1/jobs/{job_id}")).json()
            if job["status"] in ("completed", "failed"):
                return job
            await asyncio.sleep(0.1)


async def test_a_completed_jobs_video_url_is_a_presigned_url_that_downloads_the_video(
    start_gateway: GatewayFactory, s3_endpoint: str, s3_bucket: str
) -> None:
    options = s3_settings(s3_endpoint, s3_bucket)
    gateway = await start_gateway(stack_options={"jobs": options, **options}, **options)
    client = gateway.client
    user = f"u-{uuid.uuid4().hex[:8]}"
    body = {"userId": user, "prompt": "a lighthouse", "metadata": {"provider": "local"}}
    created = (await client.post("/api/v1/jobs", json=body)).json()

    done = await wait_completed(client, created["id"])
    url = done["result"]["videoUrl"]
    async with httpx.AsyncClient(timeout=10) as outside:
        video = await outside.get(url)
    stored = s3_client(s3_endpoint).get_object(Bucket=s3_bucket, Key=f"{created['id']}.mp4")["Body"].read()
    listed = (await client.get("/api/v1/jobs", params={"userId": user})).json()

    assert done["status"] == "completed", done["errorMessage"]
    assert url.startswith(f"{s3_endpoint}/{s3_bucket}/{created['id']}.mp4?X-Amz-")
    assert video.status_code == 200
    assert video.headers["content-type"] == "video/mp4"
    assert video.content == stored
    assert len(stored) == done["result"]["sizeBytes"]
    assert listed["jobs"][0]["result"]["videoUrl"].startswith(f"{s3_endpoint}/{s3_bucket}/")
    # The gateway serves no videos of its own with the S3 backend.
    assert (await client.get(f"/media/{created['id']}.mp4")).status_code == 404

    assert (await client.delete(f"/api/v1/jobs/{created['id']}")).status_code == 204
    assert object_keys(s3_endpoint, s3_bucket) == set()
