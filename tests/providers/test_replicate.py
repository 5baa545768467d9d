"""The replicate kind against a fake of Replicate's predictions API."""

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
from services.core.generators.registry import ProviderConfig
from services.core.generators.replicate import Replicate, cancel_after
from services.core.job.options import JobOptions
from tests.support.fake_replicate import FakeReplicate

KEY = "r8_7Hq2mX9pL4vT1kZ3wN6bY"
VEO = "google/veo-3.1"
KLING = "kwaivgi/kling-v2.5-turbo-pro"
IMAGE = "https://images.example/first-frame.png"


@pytest.fixture
def fake() -> Iterator[FakeReplicate]:
    server = FakeReplicate(key=KEY)
    server.start()
    yield server
    server.stop()


def provider(fake: FakeReplicate | None, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> Replicate:
    monkeypatch.setenv("REPLICATE_TEST_TOKEN", KEY)
    values: dict[str, Any] = {
        "name": "replicate",
        "kind": "replicate",
        "base_url": fake.api_url if fake is not None else "http://127.0.0.1:9/v1",
        "api_key_env": "REPLICATE_TEST_TOKEN",
        "poll_interval_seconds": 0.02,
        "timeout_seconds": 10,
        **fields,
    }
    return Replicate(ProviderConfig.model_validate(values))


def run(
    replicate: Replicate, tmp_path: Path, metadata: dict[str, Any] | None = None, *, model: str = VEO
) -> tuple[Path, list[tuple[float, str]], list[str]]:
    seen: list[tuple[float, str]] = []
    tasks: list[str] = []
    spec = replicate.spec("a fox in the snow", JobOptions.parse(metadata or {}), model=model)
    output = tmp_path / "out.mp4"
    replicate.generate(spec, output=output, progress=lambda f, s: seen.append((f, s)), on_task=tasks.append)
    return output, seen, tasks


def test_the_prediction_carries_the_key_the_deadline_and_the_models_nearest_values(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    metadata = {"durationSeconds": 7.2, "aspectRatio": "9:16", "seed": 11, "imageUrl": IMAGE}
    fake.sync = True

    run(provider(fake, monkeypatch, timeout_seconds=1800, poll_interval_seconds=5), tmp_path, metadata)

    [prediction] = fake.created()
    assert fake.paths("POST") == ["/v1/models/google/veo-3.1/predictions"]
    assert prediction.input == {
        "resolution": "720p",
        "prompt": "a fox in the snow",
        "duration": 8,
        "aspect_ratio": "9:16",
        "image": IMAGE,
        "seed": 11,
    }
    assert prediction.headers["authorization"] == f"Bearer {KEY}"
    assert (prediction.headers["prefer"], prediction.headers["cancel-after"]) == ("wait=5", "30m")


def test_kling_takes_its_first_frame_as_start_image_and_no_seed(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run(provider(fake, monkeypatch), tmp_path, {"durationSeconds": 9, "imageUrl": IMAGE, "seed": 2}, model=KLING)

    assert fake.created()[0].input == {"prompt": "a fox in the snow", "duration": 10, "start_image": IMAGE}


def test_a_pinned_version_is_created_through_predictions_with_its_version(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pinned = "acme/clip-maker:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
    replicate = provider(
        fake, monkeypatch, models=[pinned], capabilities={pinned: {"min_seconds": 2, "max_seconds": 12}}
    )

    run(replicate, tmp_path, {"durationSeconds": 6, "width": 1280, "height": 720}, model=pinned)

    assert fake.paths("POST") == ["/v1/predictions"]
    assert fake.created()[0].version == pinned.partition(":")[2]
    assert fake.created()[0].input == {"prompt": "a fox in the snow", "duration": 6, "aspect_ratio": "16:9"}


def test_model_input_is_sent_but_never_over_the_mapped_fields(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    metadata = {"durationSeconds": 4, "modelInput": {"resolution": "1080p", "negative_prompt": "blur", "duration": 8}}

    run(provider(fake, monkeypatch), tmp_path, metadata)

    sent = fake.created()[0].input
    assert (sent["resolution"], sent["negative_prompt"], sent["duration"]) == ("1080p", "blur", 4)


@pytest.mark.parametrize(
    ("metadata", "model", "field"),
    [
        ({"durationSeconds": 12}, VEO, "metadata.durationSeconds"),
        ({"aspectRatio": "1:1"}, VEO, "metadata.aspectRatio"),
        ({}, "no-owner", "metadata.model"),
        ({}, "acme/clip:not-a-version!", "metadata.model"),
        ({}, "../account", "metadata.model"),
    ],
)
def test_what_the_model_cannot_take_is_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, metadata: dict[str, Any], model: str, field: str
) -> None:
    replicate = provider(None, monkeypatch, models=[model], capabilities={} if model == VEO else {model: {}})

    with pytest.raises(InvalidOptions, match=field.replace(".", r"\.")):
        replicate.spec("p", JobOptions.parse(metadata), model=model)


@pytest.mark.parametrize(("seconds", "label"), [(1800, "30m"), (90, "1m30s"), (7200, "2h"), (0.2, "1s")])
def test_the_deadline_is_written_as_a_duration(seconds: float, label: str) -> None:
    assert cancel_after(seconds) == label


def test_starting_and_the_logged_progress_bar_are_reported(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    output, seen, tasks = run(provider(fake, monkeypatch), tmp_path)

    assert seen == [
        (0.0, "starting (queued or booting)"),
        (0.0, "starting (queued or booting)"),
        (0.3, "processing"),
        (0.7, "processing"),
        (0.95, "downloading"),
    ]
    assert tasks == [fake.created()[0].id]
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_a_prediction_finished_within_the_wait_is_not_polled(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.sync = True

    output, seen, _ = run(provider(fake, monkeypatch), tmp_path)

    assert [p for p in fake.paths("GET") if p.startswith("/v1/")] == []
    assert seen == [(0.95, "downloading")]
    assert output.stat().st_size > 0


def test_a_429_waits_for_its_retry_after_and_then_succeeds(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.rate_limit, fake.retry_after = 2, "1"
    began = time.monotonic()

    output, _, _ = run(provider(fake, monkeypatch), tmp_path)

    assert time.monotonic() - began >= 2
    assert output.stat().st_size > 0


def test_a_429_beyond_the_timeout_is_rate_limited_not_a_failure(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.rate_limit, fake.retry_after = 100, "30"

    with pytest.raises(ProviderError, match="throttled") as caught:
        run(provider(fake, monkeypatch, timeout_seconds=2), tmp_path)

    assert caught.value.rate_limited


def test_a_failed_prediction_is_a_provider_error_with_its_reason(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.outcome = "failed"

    with pytest.raises(ProviderError, match="CUDA out of memory") as caught:
        run(provider(fake, monkeypatch), tmp_path)

    assert not caught.value.final


def test_a_safety_filters_refusal_is_final(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.outcome = "unsafe"

    with pytest.raises(ProviderError, match="flagged as sensitive") as caught:
        run(provider(fake, monkeypatch), tmp_path)

    assert caught.value.final


@pytest.mark.parametrize(
    ("outcome", "reason"), [("canceled", "was canceled"), ("aborted", "aborted before it started")]
)
def test_a_prediction_its_deadline_ended_is_a_provider_error(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outcome: str, reason: str
) -> None:
    fake.outcome = outcome

    with pytest.raises(ProviderError, match=reason) as caught:
        run(provider(fake, monkeypatch), tmp_path)

    assert not caught.value.final


def test_an_expired_output_url_is_read_again_from_the_prediction(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.expire_first = True

    output, _, _ = run(provider(fake, monkeypatch), tmp_path)

    assert len([p for p in fake.paths("GET") if p.startswith("/files/")]) == 2
    with av.open(str(output)) as container:
        assert container.streams.video[0].frames > 0


def test_an_output_url_that_stays_expired_is_a_clear_provider_error(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake.expire_all = True

    with pytest.raises(ProviderError, match="download: HTTP 403"):
        run(provider(fake, monkeypatch), tmp_path)


def test_a_cancelled_job_cancels_the_prediction_and_stops(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    replicate = provider(fake, monkeypatch)

    with pytest.raises(JobCancelled):
        replicate.generate(
            replicate.spec("p", JobOptions.parse({})),
            output=tmp_path / "v.mp4",
            progress=_cancel_when_processing,
            on_task=lambda t: None,
        )

    prediction = fake.created()[0]
    assert fake.paths("POST")[-1] == f"/v1/predictions/{prediction.id}/cancel"
    assert prediction.cancelled


def test_a_timeout_cancels_the_prediction(fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake.hold = True

    with pytest.raises(ProviderError, match="no video within 1s"):
        run(provider(fake, monkeypatch, timeout_seconds=1), tmp_path)

    assert fake.created()[0].cancelled


def test_cancel_of_a_finished_or_unknown_prediction_is_fine(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    replicate = provider(fake, monkeypatch)
    _, _, tasks = run(replicate, tmp_path)

    replicate.cancel(tasks[0], timeout=2)
    replicate.cancel("p9999unknown", timeout=2)
    replicate.cancel("../account", timeout=2)

    assert fake.paths("POST")[1:] == [f"/v1/predictions/{tasks[0]}/cancel", "/v1/predictions/p9999unknown/cancel"]
    assert fake.created()[0].status == "succeeded"


def test_the_probe_reads_the_account_and_creates_nothing(fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch) -> None:
    provider(fake, monkeypatch).probe(2)

    assert [(c.method, c.path) for c in fake.calls] == [("GET", "/v1/account")]


def test_a_refused_key_fails_the_probe_and_no_key_shows_in_errors_or_logs(
    fake: FakeReplicate, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "r8_wrongWrongWrong123"
    errors: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs:
        replicate = provider(fake, monkeypatch)
        fake.outcome = "failed"
        with pytest.raises(ProviderError) as failed:
            run(replicate, tmp_path)
        errors.append(str(failed.value))
        fake.outcome = "video"
        with pytest.raises(JobCancelled):
            spec = replicate.spec("p", JobOptions.parse({}))
            replicate.generate(
                spec, output=tmp_path / "v.mp4", progress=_cancel_when_processing, on_task=lambda t: None
            )
        monkeypatch.setenv("REPLICATE_TEST_TOKEN", wrong)
        with pytest.raises(ProviderError, match="HTTP 401") as refused:
            replicate.probe(2)
        errors.append(str(refused.value))

    text = " ".join(errors) + repr(logs) + caplog.text
    assert "provider.task_cancelled" in repr(logs)
    assert KEY not in text and wrong not in text


def _cancel_when_processing(fraction: float, stage: str) -> None:
    if stage == "processing":
        raise JobCancelled("job")
