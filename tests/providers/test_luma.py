"""The luma kind against a fake speaking Luma's Agents API."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from structlog.testing import capture_logs

from services.core.generators.base import InvalidOptions, JobCancelled, ProviderError, VideoSpec
from services.core.generators.catalog import KINDS
from services.core.generators.kinds import build_provider
from services.core.generators.luma import Luma
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions
from tests.support.fake_luma import FakeLuma

KEY = "luma-api-7c6b5a4d3e2f"


@pytest.fixture
def fake() -> Iterator[FakeLuma]:
    server = FakeLuma(api_key=KEY)
    server.start()
    yield server
    server.stop()


def luma(fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> Luma:
    monkeypatch.setenv("LUMA_TEST_KEY", KEY)
    values: dict[str, Any] = {
        "name": "luma",
        "kind": "luma",
        "base_url": f"{fake.base_url}/v1",
        "api_key_env": "LUMA_TEST_KEY",
        "poll_interval_seconds": 0.01,
        "timeout_seconds": 10,
        **fields,
    }
    provider = build_provider(ProviderConfig.model_validate(values))
    assert isinstance(provider, Luma)
    return provider


class Recorder:
    """The progress a generation reported and the task it named; cancels at a stage if asked."""

    def __init__(self, cancel_at: str = "") -> None:
        self.progress: list[tuple[float, str]] = []
        self.tasks: list[str] = []
        self.cancel_at = cancel_at

    def report(self, fraction: float, stage: str) -> None:
        self.progress.append((fraction, stage))
        if self.cancel_at and stage == self.cancel_at:
            raise JobCancelled("job-1")


def generate(provider: Luma, spec: VideoSpec, tmp_path: Path, recorder: Recorder | None = None) -> Path:
    recorder = recorder or Recorder()
    output = tmp_path / "out.mp4"
    provider.generate(spec, output=output, progress=recorder.report, on_task=recorder.tasks.append)
    return output


def test_a_text_job_creates_a_ray_video_generation_with_the_bearer_key(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = luma(fake, monkeypatch)

    generate(
        provider,
        provider.spec("a fox in the snow", JobOptions.parse({"durationSeconds": 10, "aspectRatio": "9:16"})),
        tmp_path,
    )

    assert fake.created == [
        {"model": "ray-3.2", "type": "video", "prompt": "a fox in the snow", "aspect_ratio": "9:16",
         "video": {"duration": "10s", "resolution": "720p"}}
    ]  # fmt: skip
    assert next(c for c in fake.calls if c.method == "POST").headers["authorization"] == f"Bearer {KEY}"


def test_an_image_job_sends_its_first_frame(fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    provider = luma(fake, monkeypatch)
    metadata = {"imageUrl": "https://example.com/first.png", "width": 1024, "height": 768, "seed": 5}

    generate(provider, provider.spec("it starts to snow", JobOptions.parse(metadata)), tmp_path)

    assert fake.created[0]["aspect_ratio"] == "4:3"
    assert fake.created[0]["video"] == {
        "duration": "5s",
        "resolution": "720p",
        "start_frame": {"url": "https://example.com/first.png"},
    }
    assert "seed" not in fake.created[0]


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({}, (5.0, "16:9")),
        ({"durationSeconds": 4}, (5.0, "16:9")),
        ({"durationSeconds": 9.5, "aspectRatio": "1:1"}, (10.0, "1:1")),
        ({"width": 2560, "height": 1080}, (5.0, "21:9")),
        ({"aspectRatio": "3:4", "durationSeconds": 6}, (5.0, "3:4")),
    ],
)
def test_options_map_to_rays_nearest_legal_values(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, metadata: dict[str, Any], expected: tuple[float, str]
) -> None:
    spec = luma(fake, monkeypatch).spec("p", JobOptions.parse(metadata))

    assert (spec.duration_seconds, spec.aspect_ratio, spec.model) == (*expected, "ray-3.2")


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"durationSeconds": 7.5}, "metadata.durationSeconds"),
        ({"durationSeconds": 10, "imageUrl": "https://example.com/a.png"}, "metadata.durationSeconds"),
        ({"aspectRatio": "2:1"}, "metadata.aspectRatio"),
        ({"model": "ray-2"}, "metadata.model"),
    ],
)
def test_what_ray_cannot_make_is_refused_naming_the_field(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, metadata: dict[str, Any], field: str
) -> None:
    model = metadata.pop("model", "")

    with pytest.raises(InvalidOptions, match=rf"^{field}\b"):
        luma(fake, monkeypatch).spec("p", JobOptions.parse(metadata), model=model)


def test_the_generation_is_followed_through_queued_and_processing_to_a_real_video(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = luma(fake, monkeypatch)
    recorder = Recorder()

    video = provider.generate(
        provider.spec("p", JobOptions.parse({})),
        output=tmp_path / "v.mp4",
        progress=recorder.report,
        on_task=recorder.tasks.append,
    )

    assert recorder.tasks == list(fake.generations)
    assert recorder.progress == [(0.0, "queued"), (0.1, "processing"), (0.1, "processing")]
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert (video.width, video.height, video.model) == (96, 64, "ray-3.2")


def test_a_429_is_waited_out_for_its_retry_after(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = luma(fake, monkeypatch)
    fake.rate_limit, fake.retry_after = 1, "1"
    began = time.monotonic()

    output = generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    assert time.monotonic() - began >= 1
    assert output.stat().st_size > 0
    assert len(fake.created) == 1


def test_a_failed_generation_is_a_provider_error_with_lumas_reason(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = luma(fake, monkeypatch)
    fake.fail_with = ("generation_failed", "The model could not render this scene")

    with pytest.raises(ProviderError, match="could not render this scene") as caught:
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    assert not caught.value.final
    assert "generation_failed" in str(caught.value)


def test_content_moderation_is_final(fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    provider = luma(fake, monkeypatch)
    fake.fail_with = ("content_moderated", "The prompt violates the content policy")

    with pytest.raises(ProviderError, match="moderation") as caught:
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    assert caught.value.final


def test_an_input_luma_cannot_take_fails_as_invalid_options(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = luma(fake, monkeypatch)
    fake.fail_with = ("image_too_large", "The start frame is larger than 10 MB")

    with pytest.raises(InvalidOptions, match="larger than 10 MB"):
        generate(provider, provider.spec("p", JobOptions.parse({"imageUrl": "https://example.com/huge.png"})), tmp_path)


def test_an_expired_output_url_is_replaced_by_a_fresh_one_read_from_the_generation(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = luma(fake, monkeypatch)
    fake.expired_outputs = 1

    output = generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    (generation,) = fake.generations.values()
    assert [c.path for c in fake.calls if c.path.startswith("/files/")] == [
        f"/files/{generation.id}-0.mp4",
        f"/files/{generation.id}-1.mp4",
    ]
    assert output.stat().st_size > 0


def test_output_urls_that_stay_expired_end_in_a_clear_provider_error(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = luma(fake, monkeypatch)
    fake.expired_outputs = 100

    with pytest.raises(ProviderError, match=r"HTTP 403 \(expired\?\)"):
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)


def test_a_cancelled_job_stops_waiting_and_says_luma_cannot_cancel(
    fake: FakeLuma, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = luma(fake, monkeypatch)
    fake.hold = True
    recorder = Recorder(cancel_at="processing")

    with capture_logs() as logs, pytest.raises(JobCancelled):
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path, recorder)

    said = [entry for entry in logs if entry["event"] == "luma.cancel_unsupported"]
    assert [entry["generation_id"] for entry in said] == recorder.tasks
    assert {c.method for c in fake.calls} == {"POST", "GET"}
    assert not KINDS["luma"].cancellable


def test_cancel_calls_nothing_and_says_so(fake: FakeLuma, monkeypatch: pytest.MonkeyPatch) -> None:
    with capture_logs() as logs:
        luma(fake, monkeypatch).cancel("2f0c8a1e-1111-4000-8000-000000000000", timeout=1)

    assert fake.calls == []
    assert [entry["event"] for entry in logs] == ["luma.cancel_unsupported"]


def test_probe_reads_a_missing_generation_and_pays_for_nothing(fake: FakeLuma, monkeypatch: pytest.MonkeyPatch) -> None:
    luma(fake, monkeypatch).probe(2)

    assert fake.paths() == ["/v1/generations/00000000-0000-0000-0000-000000000000"]
    assert fake.created == []


def test_a_wrong_key_fails_the_probe_without_showing_any_key(fake: FakeLuma, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMA_TEST_KEY", "luma-api-wrong-9d8e")
    values = {"name": "luma", "kind": "luma", "base_url": f"{fake.base_url}/v1", "api_key_env": "LUMA_TEST_KEY"}
    provider = Luma(ProviderConfig.model_validate(values))

    with pytest.raises(ProviderError, match="HTTP 401") as caught:
        provider.probe(2)

    assert "luma-api-wrong-9d8e" not in str(caught.value)


def test_the_key_is_in_no_error_and_no_log_line(
    fake: FakeLuma,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider = luma(fake, monkeypatch)
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    with capture_logs() as logs:
        fake.hold = True
        for cancel_at in ("processing", ""):
            try:
                generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path, Recorder(cancel_at=cancel_at))
            except (JobCancelled, ProviderError) as exc:
                errors.append(repr(exc))
            fake.hold, fake.fail_with = False, ("content_moderated", "flagged")
        fake.rate_limit, fake.retry_after = 100, "30"
        with pytest.raises(ProviderError) as limited:
            luma(fake, monkeypatch, timeout_seconds=1).probe(1)
        errors.append(repr(limited.value))

    assert len(errors) == 3
    assert any(entry["event"] == "luma.generation_created" for entry in logs)
    seen = "\n".join([*errors, repr(logs), caplog.text, *capsys.readouterr()])
    assert KEY not in seen
