"""The openai-compatible kind's rules against its fake: the request of each dialect, models
mapped to their nearest legal values, the input image, progress, downloads, cancel, probe."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.core.generators.base import InvalidOptions, JobCancelled, ProviderError, RenderedVideo
from services.core.generators.input_images import ImageFetcher
from services.core.generators.openai_videos import OpenAIVideos
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions
from tests.support.fake_openai import FakeOpenAI
from tests.support.image_host import ImageHost, png

KEY = "sk-compat-4e5f6a7b8c9d"
WAN = {"durations": [5, 10], "aspect_ratios": ["16:9", "9:16"], "image_to_video": True, "price_per_second": 0.05}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY).start()
    yield fake
    fake.stop()


@pytest.fixture
def together() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY, together=True).start()
    yield fake
    fake.stop()


@pytest.fixture
def images() -> Iterator[ImageHost]:
    host = ImageHost().start()
    yield host
    host.stop()


def provider(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, *, images: ImageFetcher | None = None, **fields: Any
) -> OpenAIVideos:
    monkeypatch.setenv("COMPAT_TEST_KEY", KEY)
    values: dict[str, Any] = {
        "name": "compat",
        "kind": "openai-compatible",
        "base_url": server.base_url,
        "api_key_env": "COMPAT_TEST_KEY",
        "poll_interval_seconds": 0.02,
        "timeout_seconds": 10,
        **fields,
    }
    return OpenAIVideos(ProviderConfig.model_validate(values), images=images)


def wan(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> OpenAIVideos:
    """An entry naming its server's model and what it makes."""
    return provider(server, monkeypatch, models=["wan2.2"], capabilities={"wan2.2": WAN}, **fields)


def generate(
    kind: OpenAIVideos, tmp_path: Path, metadata: dict[str, Any], seen: list[tuple[float, str]] | None = None
) -> RenderedVideo:
    spec = kind.spec("a heron at dawn", JobOptions.parse(metadata))
    return kind.generate(
        spec,
        output=tmp_path / "out.mp4",
        progress=lambda fraction, stage: (seen if seen is not None else []).append((fraction, stage)),
        on_task=lambda task_id: None,
    )


def test_an_entry_without_models_makes_openais_shape_with_the_servers_own_model(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    video = generate(provider(server, monkeypatch), tmp_path, {"durationSeconds": 7, "aspectRatio": "9:16"})

    assert server.created[0] == {"prompt": "a heron at dawn", "seconds": "8", "size": "720x1280"}
    assert video.model == "served-model"  # what the server says it ran


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"durationSeconds": 20}, "metadata.durationSeconds"),
        ({"aspectRatio": "1:1"}, "metadata.aspectRatio"),
        ({"imageUrl": "https://images.test/a.png"}, "metadata.imageUrl"),
    ],
)
def test_what_the_model_cannot_make_is_refused_naming_the_field(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, metadata: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidOptions, match=field):
        provider(server, monkeypatch).spec("p", JobOptions.parse(metadata))


def test_a_named_model_is_asked_its_nearest_legal_values_and_the_jobs_pixels(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    video = generate(wan(server, monkeypatch), tmp_path, {"durationSeconds": 4.4, "width": 832, "height": 480})

    assert server.created[0] == {"prompt": "a heron at dawn", "model": "wan2.2", "seconds": "5", "size": "832x480"}
    assert video.model == "wan2.2"


def test_an_aspect_ratio_alone_is_asked_at_720_pixels(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = wan(server, monkeypatch).spec("p", JobOptions.parse({"durationSeconds": 10, "aspectRatio": "9:16"}))

    assert (spec.width, spec.height, spec.duration_seconds) == (720, 1280, 10)


def test_the_key_goes_only_in_the_authorization_header(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    generate(provider(server, monkeypatch), tmp_path, {})

    assert {call.headers.get("authorization") for call in server.calls} == {f"Bearer {KEY}"}
    assert not any(KEY in call.path or KEY.encode() in call.body for call in server.calls)


def test_the_vllm_omni_dialect_adds_its_own_fields(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    metadata = {"durationSeconds": 5, "aspectRatio": "16:9", "fps": 16, "seed": 42, "negativePrompt": "blur",
                "numInferenceSteps": 30, "guidanceScale": 4.5}  # fmt: skip

    generate(wan(server, monkeypatch, dialect="vllm-omni"), tmp_path, metadata)

    assert server.created[0] == {
        "prompt": "a heron at dawn",
        "model": "wan2.2",
        "seconds": "5",
        "size": "1280x720",
        "width": "1280",
        "height": "720",
        "fps": "16",
        "num_frames": "80",
        "seed": "42",
        "negative_prompt": "blur",
        "num_inference_steps": "30",
        "guidance_scale": "4.5",
    }


def test_the_openai_dialect_sends_only_openais_fields(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    generate(wan(server, monkeypatch), tmp_path, {"durationSeconds": 5, "fps": 16, "seed": 42, "negativePrompt": "x"})

    assert set(server.created[0]) == {"prompt", "model", "seconds", "size"}


def test_image_to_video_uploads_the_image_as_input_reference(
    server: FakeOpenAI, images: ImageHost, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kind = wan(server, monkeypatch, images=images.fetcher())
    images.redirects["moved.png"] = images.url("frame.png")
    moved = images.url("frame.png").replace("frame.png", "moved.png")

    generate(kind, tmp_path, {"durationSeconds": 5, "imageUrl": moved})

    upload = server.uploads[0]["input_reference"]
    assert (upload.filename, upload.content_type, upload.data) == ("input.png", "image/png", png())


@pytest.mark.parametrize(
    ("fetcher", "url", "reason"),
    [
        ({"allow_private": False}, "frame.png", "must be on a public address"),
        ({"max_bytes": 10}, "frame.png", "larger than 10 bytes"),
        ({}, "missing.png", "HTTP 404"),
        ({}, "page.png", "JPEG, PNG or WebP"),
    ],
)
def test_an_image_that_cannot_be_had_safely_fails_the_job_before_any_create(
    server: FakeOpenAI,
    images: ImageHost,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fetcher: dict[str, Any],
    url: str,
    reason: str,
) -> None:
    images.url("frame.png")
    images.url("page.png", b"<html></html>", "text/html")
    kind = wan(server, monkeypatch, images=images.fetcher(**fetcher))
    address = images.url("frame.png").replace("frame.png", url)

    with pytest.raises(InvalidOptions, match=f"metadata.imageUrl .*{reason}"):
        generate(kind, tmp_path, {"durationSeconds": 5, "imageUrl": address})

    assert server.paths("POST") == []


def test_an_untrusted_certificate_fails_the_image(
    server: FakeOpenAI, images: ImageHost, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fetcher = ImageFetcher(allow_private=True, resolver=lambda host: [ip_address("127.0.0.1")])
    kind = wan(server, monkeypatch, images=fetcher)

    with pytest.raises(InvalidOptions, match="TLS failed"):
        generate(kind, tmp_path, {"durationSeconds": 5, "imageUrl": images.url("frame.png")})


def test_together_gets_json_with_the_image_by_url_and_its_output_is_fetched_without_our_key(
    together: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kind = wan(together, monkeypatch, dialect="together")

    video = generate(kind, tmp_path, {"durationSeconds": 10, "seed": 7, "imageUrl": "https://images.test/a.png"})

    assert together.created[0] == {
        "model": "wan2.2",
        "prompt": "a heron at dawn",
        "width": 1280,
        "height": 720,
        "seconds": "10",
        "seed": 7,
        "media": {"frame_images": [{"input_image": "https://images.test/a.png", "frame": "first"}]},
    }
    download = next(call for call in together.calls if call.path.startswith("/files/"))
    assert "authorization" not in download.headers
    assert (video.width, video.height) == (96, 64)


def test_an_expired_output_url_is_asked_again_for_a_fresh_one(
    together: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    together.expire_first_output = True

    generate(wan(together, monkeypatch, dialect="together"), tmp_path, {"durationSeconds": 5})

    downloads = [call.path for call in together.calls if call.path.startswith("/files/")]
    assert len(downloads) == 2 and downloads[0] != downloads[1]
    assert together.paths("GET").count("/v1/videos/video_1") == 3  # in_progress, completed, fresh URL


def test_content_that_fails_to_download_is_tried_again(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.content_misses = 1

    video = generate(provider(server, monkeypatch), tmp_path, {})

    assert server.paths("GET").count("/v1/videos/video_1/content") == 2
    assert video.codec == "h264"


def test_content_that_never_downloads_is_a_clear_provider_error(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.content_misses = 100

    with pytest.raises(ProviderError, match=r"compat: download: HTTP 404"):
        generate(provider(server, monkeypatch), tmp_path, {})

    assert server.paths("GET").count("/v1/videos/video_1/content") == 3


def test_an_entry_naming_a_model_must_say_what_it_makes(server: FakeOpenAI) -> None:
    entry = {"name": "x", "kind": "openai-compatible", "base_url": server.base_url, "models": ["wan2.2"]}

    with pytest.raises(ValidationError, match="give its capabilities"):
        ProviderConfig.model_validate(entry)


def test_progress_reports_queued_then_the_servers_percent(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.queued_polls, server.steps = 2, [30, 60]
    seen: list[tuple[float, str]] = []

    generate(provider(server, monkeypatch), tmp_path, {}, seen)

    assert seen == [(0.0, "queued")] * 3 + [(0.3, "generating"), (0.6, "generating"), (0.99, "downloading")]


def test_the_task_is_recorded_as_soon_as_the_server_names_it(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kind = provider(server, monkeypatch)
    recorded: list[tuple[str, int]] = []

    kind.generate(
        kind.spec("p", JobOptions.parse({})),
        output=tmp_path / "v.mp4",
        progress=lambda f, s: None,
        on_task=lambda task_id: recorded.append((task_id, len(server.calls))),
    )

    assert recorded == [("video_1", 1)]


def test_a_moderation_failure_is_final_and_another_failure_is_not(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.fail_videos = True
    with pytest.raises(ProviderError, match="moderation_blocked: blocked by moderation") as refused:
        generate(provider(server, monkeypatch), tmp_path, {})
    server.fail_videos, server.fail_reason = False, "GPU out of memory"
    with pytest.raises(ProviderError, match="GPU out of memory") as failed:
        generate(provider(server, monkeypatch), tmp_path, {})

    assert (refused.value.final, failed.value.final) == (True, False)


def test_a_429_on_the_create_waits_and_is_not_a_failure(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.rate_limit, server.retry_after = 1, "0.2"

    generate(provider(server, monkeypatch), tmp_path, {})

    assert server.paths("POST") == ["/v1/videos", "/v1/videos"]


def test_a_cancelled_job_deletes_its_remote_video_and_stops(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.steps = [10] * 1000
    kind = provider(server, monkeypatch)
    seen: list[str] = []

    def progress(fraction: float, stage: str) -> None:
        seen.append(stage)
        if stage == "generating":
            raise JobCancelled("job")

    with pytest.raises(JobCancelled):
        kind.generate(
            kind.spec("p", JobOptions.parse({})),
            output=tmp_path / "v.mp4",
            progress=progress,
            on_task=lambda task_id: None,
        )

    assert server.deleted == ["video_1"]
    assert not server.paths("GET")[-1].endswith("/content")


def test_cancel_of_a_finished_or_unknown_video_is_fine(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kind = provider(server, monkeypatch)
    generate(kind, tmp_path, {})

    kind.cancel("video_1", timeout=2)
    kind.cancel("video_1", timeout=2)
    kind.cancel("video_404", timeout=2)

    assert server.paths("DELETE") == ["/v1/videos/video_1", "/v1/videos/video_1", "/v1/videos/video_404"]


def test_cancel_that_the_server_refuses_is_a_provider_error(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.failing = True

    with pytest.raises(ProviderError, match="HTTP 500"):
        provider(server, monkeypatch).cancel("video_1", timeout=2)


def test_probe_generates_nothing(server: FakeOpenAI, together: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    provider(server, monkeypatch).probe(2)
    wan(together, monkeypatch, dialect="together").probe(2)  # its 404 for an unknown video: answered

    assert [(c.method, c.path) for c in server.calls] == [("GET", "/v1/videos")]
    assert [(c.method, c.path) for c in together.calls] == [("GET", "/v1/videos/videogen-probe")]


def test_probe_with_a_refused_key_fails(together: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    kind = wan(together, monkeypatch, dialect="together")
    monkeypatch.setenv("COMPAT_TEST_KEY", "sk-rotated-away-0000")

    with pytest.raises(ProviderError, match="HTTP 401"):
        kind.probe(2)


def test_no_key_in_any_error_or_log(
    server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    for fault in ("failing", "fail_videos", "rate_limit"):
        setattr(server, fault, 100 if fault == "rate_limit" else True)
        server.retry_after = "30"
        try:
            generate(provider(server, monkeypatch, timeout_seconds=1), tmp_path, {})
        except ProviderError as exc:
            errors.append(str(exc))
        setattr(server, fault, 0 if fault == "rate_limit" else False)
    kind = provider(server, monkeypatch)
    monkeypatch.setenv("COMPAT_TEST_KEY", "sk-wrong-5555")
    with pytest.raises(ProviderError) as refused:
        kind.probe(2)

    assert len(errors) == 3
    captured = capsys.readouterr()
    for text in [*errors, str(refused.value), caplog.text, captured.out, captured.err]:
        assert KEY not in text and "sk-wrong-5555" not in text
