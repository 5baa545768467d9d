"""GET /media/{key} with MEDIA_BACKEND=local: a job's signed videoUrl serves the video; in
production an unsigned, expired or tampered one is 403 (services/core/media_urls.py)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from services.core.media_urls import MediaUrlSigner
from services.core.secrets import MEDIA_URLS, derive
from services.core.settings import EXAMPLE_SECRET_KEY
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings
from tests.gateway.conftest import ADMIN_KEY, SECRET_KEY, Gateway, GatewayFactory, production

SIGNER = MediaUrlSigner(key=derive(SECRET_KEY, MEDIA_URLS), ttl_seconds=3600)
TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}
KEY = "cmwwxjck83noow87bhzi07al8.mp4"
VIDEO = bytes(range(256)) * 4


async def completed_job(client: httpx.AsyncClient) -> dict[str, Any]:
    """A job rendered by the stack's worker, as GET /api/v1/jobs/{id} answers it once completed."""
    body = {"userId": f"u-{uuid.uuid4().hex[:8]}", "prompt": "a sunset", "metadata": TINY}
    created = await client.post("/api/v1/jobs", json=body)
    assert created.status_code == 201, created.text
    async with asyncio.timeout(60):
        while (job := (await client.get(f"/api/v1/jobs/{created.json()['id']}")).json())["status"] != "completed":
            assert job["status"] in ("queued", "processing"), job
            await asyncio.sleep(0.1)
    return dict(job)


@pytest.fixture(scope="module")
async def production_gateway(start_module_gateway: GatewayFactory) -> Gateway:
    """A production system whose services share SECRET_KEY, shared by the module's tests (each
    renders a job of its own); its client sends the admin key."""
    gateway = await start_module_gateway(**production())
    gateway.client.headers["X-API-Key"] = ADMIN_KEY
    return gateway


def key_and_query(url: str) -> tuple[str, dict[str, str]]:
    """The storage key and the query parameters of a media URL."""
    parts = urlsplit(url)
    return parts.path.removeprefix("/media/"), {name: found[0] for name, found in parse_qs(parts.query).items()}


async def test_in_production_a_jobs_video_url_serves_the_video_and_a_range_of_it(
    production_gateway: Gateway,
) -> None:
    gateway = production_gateway
    job = await completed_job(gateway.client)
    url = job["result"]["videoUrl"]
    outside = httpx.AsyncClient(base_url=gateway.client.base_url)  # no API key: the URL is enough

    video = await outside.get(url)
    part = await outside.get(url, headers={"Range": "bytes=0-99"})

    assert re.fullmatch(rf"/media/{job['id']}\.mp4\?expires=[0-9]+&signature=[A-Za-z0-9_-]{{43}}", url)
    assert (video.status_code, video.headers["content-type"]) == (200, "video/mp4")
    assert len(video.content) == job["result"]["sizeBytes"]
    assert (part.status_code, part.content) == (206, video.content[:100])
    await outside.aclose()


async def test_in_production_a_bare_expired_or_tampered_media_url_is_403(production_gateway: Gateway) -> None:
    gateway = production_gateway
    job = await completed_job(gateway.client)
    key, query = key_and_query(job["result"]["videoUrl"])
    expires, signature = query["expires"], query["signature"]
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    expired = SIGNER.sign(key, now=time.time() - 3601)
    other = SIGNER.sign(f"{job['id']}-2.mp4")
    cases = {
        "bare": (f"/media/{key}", "not signed"),
        "expired": (f"/media/{key}?{expired}", "expired"),
        "tampered signature": (f"/media/{key}?expires={expires}&signature={flipped}", "signature"),
        "tampered expiry": (f"/media/{key}?expires={int(expires) + 60}&signature={signature}", "signature"),
        "another key's signature": (f"/media/{key}?{other}", "signature"),
        "signature alone": (f"/media/{key}?signature={signature}", "expires"),
        "expiry alone": (f"/media/{key}?expires={expires}", "signature"),
    }

    for case, (url, reason) in cases.items():
        answer = await gateway.client.get(url)
        assert answer.status_code == 403, case
        assert answer.headers["content-type"] == "application/json", case
        assert reason in answer.json()["detail"], case
        assert signature not in answer.text and key not in answer.text, case
    assert (await gateway.client.get(job["result"]["videoUrl"])).status_code == 200


async def test_in_development_a_bare_media_path_is_served_but_a_bad_signature_is_not(gateway: Gateway) -> None:
    job = await completed_job(gateway.client)
    key, query = key_and_query(job["result"]["videoUrl"])

    development = MediaUrlSigner(key=derive(EXAMPLE_SECRET_KEY, MEDIA_URLS), ttl_seconds=3600)

    bare = await gateway.client.get(f"/media/{key}")
    tampered = await gateway.client.get(f"/media/{key}", params={**query, "expires": int(query["expires"]) + 1})
    expired = await gateway.client.get(f"/media/{key}?{development.sign(key, now=time.time() - 3601)}")

    assert (bare.status_code, len(bare.content)) == (200, job["result"]["sizeBytes"])
    assert (tampered.status_code, expired.status_code) == (403, 403)
    assert "expired" in expired.json()["detail"]


@pytest.fixture
async def local_gateway(tmp_path: Path) -> AsyncIterator[Any]:
    """Starts a gateway app in this process (no backends: the media route needs none) over a
    media directory holding KEY; answers a client of it."""
    clients: list[httpx.AsyncClient] = []
    (tmp_path / KEY).write_bytes(VIDEO)

    async def start(**overrides: Any) -> httpx.AsyncClient:
        settings = GatewaySettings(_env_file=None, secret_key=SECRET_KEY, media_dir=tmp_path, **overrides)
        app = create_app(settings, redis_url="redis://127.0.0.1:1/0")
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway"))
        return clients[-1]

    yield start
    for client in clients:
        await client.aclose()


async def test_an_unknown_key_with_a_valid_signature_is_404(local_gateway: Any) -> None:
    client = await local_gateway(app_env="production")
    missing = "cnotthereatall0000000000a.mp4"

    assert (await client.get(f"/media/{missing}?{SIGNER.sign(missing)}")).status_code == 404
    assert (await client.get(f"/media/{missing}")).status_code == 403, "unsigned: which videos exist stays unknown"


async def test_an_absurd_expiry_is_403(local_gateway: Any) -> None:
    client = await local_gateway(app_env="production")
    signature = SIGNER.signature(KEY, int(time.time()) + 60)

    for expires in ["soon", "-60", "1e10", "0x10", "", str(int(time.time()) + 8 * 24 * 3600), "9" * 400]:
        answer = await client.get(f"/media/{KEY}", params={"expires": expires, "signature": signature})
        assert (answer.status_code, answer.json()["detail"]) == (
            403,
            "this media URL's `expires` is not a valid expiry time",
        )


async def test_a_signed_video_may_be_cached_privately_until_its_url_expires(local_gateway: Any) -> None:
    client = await local_gateway(app_env="production")
    before = int(time.time())
    query = SIGNER.sign(KEY)

    whole = await client.get(f"/media/{KEY}?{query}")
    part = await client.get(f"/media/{KEY}?{query}", headers={"Range": "bytes=10-19"})
    refused = await client.get(f"/media/{KEY}")

    for answer in (whole, part):
        cache = re.fullmatch(r"private, max-age=([0-9]+)", answer.headers["cache-control"])
        assert cache is not None and 3600 - (int(time.time()) - before) - 1 <= int(cache.group(1)) <= 3600
    assert (whole.status_code, whole.content, part.status_code, part.content) == (200, VIDEO, 206, VIDEO[10:20])
    assert (refused.status_code, refused.headers["cache-control"]) == (403, "no-store")


async def test_staging_refuses_a_bare_media_path_as_production_does(local_gateway: Any) -> None:
    staging = await local_gateway(app_env="staging")
    test = await local_gateway(app_env="test")

    assert (await staging.get(f"/media/{KEY}")).status_code == 403
    assert (await staging.get(f"/media/{KEY}?{SIGNER.sign(KEY)}")).status_code == 200
    assert (await test.get(f"/media/{KEY}")).status_code == 200


async def test_the_api_description_documents_the_media_answers_and_its_query(local_gateway: Any) -> None:
    client = await local_gateway()

    route = (await client.get("/openapi.json")).json()["paths"]["/media/{key}"]["get"]

    assert set(route["responses"]) >= {"200", "206", "403", "404"}
    assert "video/mp4" in route["responses"]["206"]["content"]
    parameters = {p["name"]: p for p in route["parameters"] if p["in"] == "query"}
    assert set(parameters) == {"expires", "signature"}
    assert not any(p.get("required") for p in parameters.values())
