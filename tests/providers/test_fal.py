"""The fal kind against a fake of fal.ai's queue API."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import structlog

from services.core.generators.base import InvalidOptions, JobCancelled, ProviderError
from services.core.generators.fal import Fal
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions
from tests.support.fake_fal import FakeFal

KEY = "fal-key-id:5e3c9a7d1f2b4c6e"
VEO = "fal-ai/veo3.1"
KLING = "fal-ai/kling-video/v3/turbo/pro/text-to-video"
KLING_I2V = "fal-ai/kling-video/v2.5-turbo/pro/image-to-video"
IMAGE = "https://images.example/first-frame.png"


@pytest.fixture
def fake() -> Iterator[FakeFal]:
    server = FakeFal(key=KEY)
    server.start()
    yield server
    server.stop()


def provider(fake: FakeFal | None, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> Fal:
    monkeypatch.setenv("FAL_TEST_KEY", KEY)
    values: dict[str, Any] = {
        "name": "fal",
        "kind": "fal",
        "base_url": fake.base_url if fake is not None else "http://127.0.0.1:9",
        "api_key_env": "FAL_TEST_KEY",
        "poll_interval_seconds": 0.02,
        "timeout_seconds": 10,
        **fields,
    }
    return Fal(ProviderConfig.model_validate(values))


def run(
    fal: Fal, tmp_path: Path, metadata: dict[str, Any] | None = None, *, model: str = VEO
) -> tuple[Path, list[tuple[float, str]], list[str]]:
    seen: list[tuple[float, str]] = []
    tasks: list[str] = []
    spec = fal.spec("a fox in the snow", JobOptions.parse(metadata or {}), model=model)
    output = tmp_path / "out.mp4"
    fal.generate(spec, output=output, progress=lambda f, s: seen.append((f, s)), on_task=tasks.append)
    return output, seen, tasks


def test_the_submit_carries_the_key_and_the_models_nearest_legal_values(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    metadata = {"durationSeconds": 5.5, "aspectRatio": "9:16", "seed": 7}

    run(provider(fake, monkeypatch), tmp_path, metadata)

    [request] = fake.submitted()
    assert request.model == VEO
    assert request.input == {"prompt": "a fox in the snow", "duration": "6s", "aspect_ratio": "9:16", "seed": 7}
    assert request.headers["authorization"] == f"Key {KEY}"
    assert '"expiration_duration_seconds"' in request.headers["x-fal-object-lifecycle-preference"]


def test_width_and_height_choose_the_nearest_aspect_ratio(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run(provider(fake, monkeypatch), tmp_path, {"width": 1920, "height": 1088, "durationSeconds": 8})

    assert fake.submitted()[0].input["aspect_ratio"] == "16:9"
    assert fake.submitted()[0].input["duration"] == "8s"


def test_kling_takes_whole_seconds_as_text_and_no_seed(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run(provider(fake, monkeypatch), tmp_path, {"durationSeconds": 4, "aspectRatio": "1:1", "seed": 3}, model=KLING)

    assert fake.submitted()[0].input == {"prompt": "a fox in the snow", "duration": "4", "aspect_ratio": "1:1"}


def test_an_image_job_sends_the_first_frame_and_no_shape_to_a_model_shaped_by_it(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    metadata = {"imageUrl": IMAGE, "durationSeconds": 4, "aspectRatio": "16:9"}

    run(provider(fake, monkeypatch), tmp_path, metadata, model=KLING_I2V)

    assert fake.submitted()[0].input == {"prompt": "a fox in the snow", "duration": "5", "image_url": IMAGE}


def test_model_input_is_sent_but_never_over_the_mapped_fields(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    metadata = {"durationSeconds": 4, "modelInput": {"resolution": "1080p", "generate_audio": False, "duration": "8s"}}

    run(provider(fake, monkeypatch), tmp_path, metadata)

    sent = fake.submitted()[0].input
    assert (sent["resolution"], sent["generate_audio"], sent["duration"]) == ("1080p", False, "4s")


def test_a_model_the_entry_describes_gets_the_common_input(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wan = "fal-ai/wan-25-preview/text-to-video"
    fal = provider(
        fake, monkeypatch, models=[wan], capabilities={wan: {"durations": [5, 10], "price_per_second": 0.05}}
    )

    run(fal, tmp_path, {"durationSeconds": 6, "aspectRatio": "16:9"}, model=wan)

    assert fake.submitted()[0].input == {"prompt": "a fox in the snow", "duration": "5", "aspect_ratio": "16:9"}
    assert fake.paths("GET")[0] == f"/fal-ai/wan-25-preview/requests/{fake.submitted()[0].id}/status"


@pytest.mark.parametrize(
    ("metadata", "model", "field"),
    [
        ({"durationSeconds": 20}, VEO, "metadata.durationSeconds"),
        ({"aspectRatio": "1:1"}, VEO, "metadata.aspectRatio"),
        ({"width": 1000, "height": 1000}, VEO, "metadata.width/height"),
        ({"imageUrl": IMAGE}, VEO, "metadata.imageUrl"),
        ({}, KLING_I2V, "metadata.imageUrl"),
        ({}, "veo3", "metadata.model"),
        ({}, "fal-ai/../admin", "metadata.model"),
    ],
)
def test_what_the_model_cannot_take_is_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, metadata: dict[str, Any], model: str, field: str
) -> None:
    fal = provider(None, monkeypatch, models=[model], capabilities={} if model in (VEO, KLING_I2V) else {model: {}})

    with pytest.raises(InvalidOptions, match=field.replace(".", r"\.")):
        fal.spec("p", JobOptions.parse(metadata), model=model)


def test_the_queue_position_and_logged_progress_are_reported(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    output, seen, tasks = run(provider(fake, monkeypatch), tmp_path)

    assert seen == [
        (0.0, "queued (position 1)"),
        (0.0, "queued (position 0)"),
        (0.4, "in progress"),
        (0.95, "downloading"),
    ]
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert tasks == [f"fal-ai/veo3.1/requests/{fake.submitted()[0].id}"]


def test_status_result_and_cancel_live_under_the_app_not_the_model_path(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, _, tasks = run(provider(fake, monkeypatch), tmp_path, {"durationSeconds": 5}, model=KLING)

    request = fake.submitted()[0]
    assert fake.paths("POST") == [f"/{KLING}"]
    assert set(fake.paths("GET")) - {p for p in fake.paths("GET") if p.startswith("/files/")} == {
        f"/fal-ai/kling-video/requests/{request.id}/status",
        f"/fal-ai/kling-video/requests/{request.id}",
    }
    assert tasks == [f"fal-ai/kling-video/requests/{request.id}"]


def test_a_429_waits_for_its_retry_after_and_then_succeeds(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.rate_limit, fake.retry_after = 2, "1"
    began = time.monotonic()

    output, _, _ = run(provider(fake, monkeypatch), tmp_path)

    assert time.monotonic() - began >= 2
    assert output.stat().st_size > 0


def test_a_429_beyond_the_timeout_is_rate_limited_not_a_failure(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.rate_limit, fake.retry_after = 100, "30"

    with pytest.raises(ProviderError) as caught:
        run(provider(fake, monkeypatch, timeout_seconds=2), tmp_path)

    assert caught.value.rate_limited


def test_a_failed_request_is_a_provider_error_with_fals_reason(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.outcome = "error"

    with pytest.raises(ProviderError, match="Runner disconnected") as caught:
        run(provider(fake, monkeypatch), tmp_path)

    assert "runner_disconnected" in str(caught.value)
    assert not caught.value.final


def test_a_content_policy_refusal_is_final(fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake.outcome = "unsafe"

    with pytest.raises(ProviderError, match="flagged by a content checker") as caught:
        run(provider(fake, monkeypatch), tmp_path)

    assert caught.value.final


def test_the_models_refusal_of_its_input_is_invalid_options(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.outcome = "invalid"

    with pytest.raises(InvalidOptions, match="duration must be one of"):
        run(provider(fake, monkeypatch), tmp_path)


def test_an_expired_output_url_is_asked_for_again(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.expire_first = True

    output, _, _ = run(provider(fake, monkeypatch), tmp_path)

    assert fake.submitted()[0].results == 2
    with av.open(str(output)) as container:
        assert container.streams.video[0].frames > 0


def test_an_output_url_that_stays_expired_is_a_clear_provider_error(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.expire_all = True

    with pytest.raises(ProviderError, match="download: HTTP 403"):
        run(provider(fake, monkeypatch), tmp_path)


def test_a_cancelled_job_cancels_the_request_and_stops(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fal = provider(fake, monkeypatch)
    spec = fal.spec("p", JobOptions.parse({}))

    def progress(fraction: float, stage: str) -> None:
        if stage == "in progress":
            raise JobCancelled("job")

    with pytest.raises(JobCancelled):
        fal.generate(spec, output=tmp_path / "v.mp4", progress=progress, on_task=lambda task: None)

    request = fake.submitted()[0]
    assert fake.paths("PUT") == [f"/fal-ai/veo3.1/requests/{request.id}/cancel"]
    assert request.cancelled


def test_a_timeout_cancels_the_request(fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake.hold = True

    with pytest.raises(ProviderError, match="no video within 1s"):
        run(provider(fake, monkeypatch, timeout_seconds=1), tmp_path)

    assert fake.submitted()[0].cancelled


def test_cancel_takes_the_recorded_task(fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake.hold = True
    fal = provider(fake, monkeypatch, timeout_seconds=0.3)
    tasks: list[str] = []
    with pytest.raises(ProviderError):
        fal.generate(
            fal.spec("p", JobOptions.parse({})),
            output=tmp_path / "v.mp4",
            progress=lambda f, s: None,
            on_task=tasks.append,
        )
    fake.submitted()[0].cancelled = False  # as if that attempt's worker had died

    fal.cancel(tasks[0], timeout=2)

    assert fake.submitted()[0].cancelled
    assert fake.paths("PUT")[-1] == f"/{tasks[0]}/cancel"


def test_cancel_of_a_finished_or_unknown_request_is_fine(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fal = provider(fake, monkeypatch)
    _, _, tasks = run(fal, tmp_path)

    fal.cancel(tasks[0], timeout=2)
    fal.cancel("fal-ai/veo3.1/requests/never-submitted", timeout=2)
    fal.cancel("not a task", timeout=2)

    assert fake.paths("PUT") == [f"/{tasks[0]}/cancel", "/fal-ai/veo3.1/requests/never-submitted/cancel"]


def test_the_probe_reads_a_missing_request_and_submits_nothing(fake: FakeFal, monkeypatch: pytest.MonkeyPatch) -> None:
    provider(fake, monkeypatch).probe(2)

    assert [(c.method, c.path) for c in fake.calls] == [
        ("GET", "/fal-ai/veo3.1/requests/00000000-0000-0000-0000-000000000000/status")
    ]


def test_a_refused_key_fails_the_probe_and_no_key_shows_in_errors_or_logs(
    fake: FakeFal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "fal-wrong:0a1b2c3d4e5f"
    errors: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        monkeypatch.setenv("FAL_TEST_KEY", KEY)
        fal = provider(fake, monkeypatch)
        fake.outcome = "error"
        with pytest.raises(ProviderError) as failed:
            run(fal, tmp_path)
        errors.append(str(failed.value))
        fake.outcome, fake.hold = "video", True
        with pytest.raises(JobCancelled):
            fal.generate(
                fal.spec("p", JobOptions.parse({})),
                output=tmp_path / "v.mp4",
                progress=_cancel_when_running,
                on_task=lambda t: None,
            )
        monkeypatch.setenv("FAL_TEST_KEY", wrong)
        with pytest.raises(ProviderError, match="HTTP 401") as refused:
            fal.probe(2)
        errors.append(str(refused.value))

    text = " ".join(errors) + repr(logs) + caplog.text
    assert "provider.task_cancelled" in repr(logs)
    assert KEY not in text and wrong not in text
    assert "5e3c9a7d1f2b4c6e" not in text and "0a1b2c3d4e5f" not in text


def _cancel_when_running(fraction: float, stage: str) -> None:
    if stage == "in progress":
        raise JobCancelled("job")
