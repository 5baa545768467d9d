"""What every remote kind shares: 429s waited out, outages retried but never a create, errors
without keys, capped downloads, fresh URLs for expired ones, and the check that a file is a video."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.core.generators.base import InvalidOptions, ProviderError
from services.core.generators.http import ProviderHttp, fetch_video, probe_video, retry_after
from services.core.generators.registry import ProviderConfig
from tests.support.fake_provider import SAMPLE, FakeProvider, Response

KEY = "sk-test-0a1b2c3d4e5f"


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    server = FakeProvider(key_value=f"Bearer {KEY}").start()
    yield server
    server.stop()


def client(fake: FakeProvider, slept: list[float] | None = None) -> ProviderHttp:
    config = ProviderConfig(name="remote", kind="openai-compatible", base_url=fake.base_url)
    http = ProviderHttp(config, headers={"Authorization": f"Bearer {KEY}"})
    if slept is not None:
        http._sleep = lambda seconds: slept.append(float(seconds))  # what was waited, without waiting
    return http


def soon() -> float:
    return time.monotonic() + 10


def test_a_429_is_waited_out_for_its_retry_after_then_the_call_goes_through(fake: FakeProvider) -> None:
    fake.route("GET", "/things", lambda r: Response(200, {"ok": True}))
    fake.rate_limit, fake.retry_after = 2, "3"
    slept: list[float] = []

    answer = client(fake, slept).json("GET", "/things", soon())

    assert answer == {"ok": True}
    assert len(slept) == 2 and all(3 <= s <= 3.6 for s in slept)


def test_a_429_beyond_the_deadline_is_a_rate_limited_error(fake: FakeProvider) -> None:
    fake.route("GET", "/things", lambda r: Response(200, {}))
    fake.rate_limit, fake.retry_after = 5, "30"

    with pytest.raises(ProviderError) as caught:
        client(fake, []).json("GET", "/things", time.monotonic() + 5)

    assert caught.value.rate_limited


def test_a_brief_outage_is_retried_for_a_read_but_never_for_a_create(fake: FakeProvider) -> None:
    answers = iter([Response(503, {"detail": "busy"}), Response(200, {"ok": True})])
    fake.route("GET", "/read", lambda r: next(answers))
    fake.route("POST", "/create", lambda r: Response(502, {"detail": "bad gateway"}))

    read = client(fake, []).json("GET", "/read", soon())
    with pytest.raises(ProviderError, match="HTTP 502 bad gateway"):
        client(fake, []).json("POST", "/create", soon(), json={})

    assert read == {"ok": True}
    assert fake.paths("POST") == ["/create"], "a create that may have been taken is never sent twice"


def test_a_refused_request_is_invalid_options_with_the_providers_reason_and_no_key(fake: FakeProvider) -> None:
    fake.route("POST", "/create", lambda r: Response(400, {"error": {"message": "duration must be 5 or 10"}}))

    with pytest.raises(InvalidOptions) as caught:
        client(fake).json("POST", "/create", soon(), json={})

    assert "duration must be 5 or 10" in str(caught.value) and KEY not in str(caught.value)


def test_a_download_larger_than_the_cap_is_refused(fake: FakeProvider, tmp_path: Path) -> None:
    url = fake.file_url("big.mp4", SAMPLE)

    with pytest.raises(ProviderError, match="larger than"):
        client(fake).download(url, tmp_path / "v.mp4", soon(), max_bytes=len(SAMPLE) - 1)


def test_an_expired_url_is_asked_again_and_the_fresh_one_is_stored_and_checked(
    fake: FakeProvider, tmp_path: Path
) -> None:
    stale, fresh = fake.file_url("stale.mp4"), fake.file_url("fresh.mp4")
    fake.expired.add("stale.mp4")
    urls = iter([stale, fresh])

    video = fetch_video(client(fake), tmp_path / "v.mp4", soon(), url=lambda: next(urls), max_bytes=10**7, model="m")

    assert (video.codec, video.width, video.height, video.content_type) == ("h264", 96, 64, "video/mp4")
    assert video.duration_seconds == pytest.approx(1.0)


def test_a_file_that_is_no_video_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "page.mp4"
    path.write_text("<html>Access denied</html>")

    with pytest.raises(ProviderError, match="not one we can read"):
        probe_video(path, model="m")


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500"}, 1.5), ({"retry-after": "soon"}, 1.0), ({}, 1.0),
     ({"retry-after": "600"}, 60.0)],
)  # fmt: skip
def test_retry_after_reads_seconds_milliseconds_and_bounds_them(headers: dict[str, str], seconds: float) -> None:
    assert retry_after(httpx.Response(429, headers=headers)) == seconds
