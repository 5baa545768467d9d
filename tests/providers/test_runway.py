"""The runway kind against a fake speaking Runway's task API."""

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
from services.core.generators.kinds import build_provider
from services.core.generators.registry import ProviderConfig
from services.core.generators.runway import Runway
from services.core.job.options import JobOptions
from tests.support.fake_runway import FakeRunway

KEY = "key_runway_5e1d0c9b8a7f"


@pytest.fixture
def fake() -> Iterator[FakeRunway]:
    server = FakeRunway(api_key=KEY)
    server.start()
    yield server
    server.stop()


def runway(fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, **fields: Any) -> Runway:
    monkeypatch.setenv("RUNWAY_TEST_KEY", KEY)
    values: dict[str, Any] = {
        "name": "runway",
        "kind": "runway",
        "base_url": fake.base_url,
        "api_key_env": "RUNWAY_TEST_KEY",
        "poll_interval_seconds": 0.01,
        "timeout_seconds": 10,
        **fields,
    }
    provider = build_provider(ProviderConfig.model_validate(values))
    assert isinstance(provider, Runway)
    return provider


class Recorder:
    """The progress a generation reported and the task it named; cancels at a stage if asked."""

    def __init__(self, cancel_at: str = "") -> None:
        self.progress: list[tuple[float, str]] = []
        self.tasks: list[str] = []
        self.cancel_at = cancel_at

    def report(self, fraction: float, stage: str) -> None:
        self.progress.append((fraction, stage))
        if self.cancel_at and stage.startswith(self.cancel_at):
            raise JobCancelled("job-1")


def generate(provider: Runway, spec: VideoSpec, tmp_path: Path, recorder: Recorder | None = None) -> Path:
    recorder = recorder or Recorder()
    output = tmp_path / "out.mp4"
    provider.generate(spec, output=output, progress=recorder.report, on_task=recorder.tasks.append)
    return output


def test_a_text_job_creates_a_text_to_video_task_with_runways_headers_and_fields(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    spec = provider.spec(
        "a fox in the snow", JobOptions.parse({"durationSeconds": 5, "aspectRatio": "16:9", "seed": 7})
    )

    generate(provider, spec, tmp_path)

    assert fake.created == [
        ("text_to_video", {"model": "gen4.5", "ratio": "1280:720", "duration": 5, "promptText": "a fox in the snow",
                           "seed": 7})
    ]  # fmt: skip
    create = next(c for c in fake.calls if c.method == "POST")
    assert create.headers["authorization"] == f"Bearer {KEY}"
    assert create.headers["x-runway-version"] == "2024-11-06"


def test_an_image_job_creates_an_image_to_video_task_with_its_first_frame(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    metadata = {"imageUrl": "https://example.com/first.png", "aspectRatio": "4:3", "durationSeconds": 3}
    spec = provider.spec("it starts to snow", JobOptions.parse(metadata), model="gen4_turbo")

    generate(provider, spec, tmp_path)

    assert fake.created == [
        ("image_to_video", {"model": "gen4_turbo", "ratio": "1104:832", "duration": 3,
                            "promptText": "it starts to snow", "promptImage": "https://example.com/first.png"})
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("model", "metadata", "expected"),
    [
        ("gen4.5", {"durationSeconds": 4.6}, (5.0, "1280:720")),
        ("gen4.5", {"durationSeconds": 10, "aspectRatio": "9:16"}, (10.0, "720:1280")),
        ("gen4.5", {"width": 1080, "height": 1920}, (4.0, "720:1280")),
        ("veo3.1", {"durationSeconds": 5}, (6.0, "1280:720")),
        ("veo3.1", {"durationSeconds": 8, "width": 1920, "height": 1080}, (8.0, "1920:1080")),
        (
            "veo3.1_fast",
            {"durationSeconds": 4, "aspectRatio": "9:16", "height": 1920, "width": 1080},
            (4.0, "1080:1920"),
        ),
        ("veo3", {"durationSeconds": 7.5}, (8.0, "1280:720")),
    ],
)
def test_options_map_to_the_models_nearest_legal_values(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, model: str, metadata: dict[str, Any],
    expected: tuple[float, str],
) -> None:  # fmt: skip
    spec = runway(fake, monkeypatch).spec("p", JobOptions.parse(metadata), model=model)

    assert (spec.duration_seconds, spec.aspect_ratio) == expected
    assert spec.model == model


def test_an_entrys_own_shapes_are_asked_in_runways_pixel_sizes(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes = {"gen4.5": {"durations": [5, 10], "aspect_ratios": ["16:9", "9:16"], "price_per_second": 0.12}}
    provider = runway(fake, monkeypatch, capabilities=shapes)

    spec = provider.spec("p", JobOptions.parse({"aspectRatio": "9:16", "durationSeconds": 10}))

    assert (spec.aspect_ratio, spec.duration_seconds) == ("720:1280", 10.0)


def test_veo_gets_no_seed_and_no_audio(fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    provider = runway(fake, monkeypatch)

    generate(
        provider, provider.spec("p", JobOptions.parse({"durationSeconds": 4, "seed": 3}), model="veo3.1_fast"), tmp_path
    )

    assert fake.created[0][1] == {"model": "veo3.1_fast", "ratio": "1280:720", "duration": 4, "promptText": "p",
                                  "audio": False}  # fmt: skip


@pytest.mark.parametrize(
    ("model", "metadata", "prompt", "field"),
    [
        ("veo3", {"durationSeconds": 4}, "p", "metadata.durationSeconds"),
        ("gen4.5", {"durationSeconds": 30}, "p", "metadata.durationSeconds"),
        ("gen4_turbo", {}, "p", "metadata.imageUrl"),
        ("gen4.5", {"aspectRatio": "1:1"}, "p", "metadata.aspectRatio"),
        ("gen4_aleph", {}, "p", "metadata.model"),
        ("gen4.5", {}, "x" * 1001, "prompt"),
    ],
)
def test_what_a_model_cannot_take_is_refused_naming_the_field(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, model: str, metadata: dict[str, Any], prompt: str, field: str
) -> None:
    with pytest.raises(InvalidOptions, match=rf"^{field}\b"):
        runway(fake, monkeypatch).spec(prompt, JobOptions.parse(metadata), model=model)


def test_the_task_is_followed_through_queued_throttled_and_running_to_a_real_video(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    recorder = Recorder()

    video = provider.generate(
        provider.spec("p", JobOptions.parse({})),
        output=tmp_path / "v.mp4",
        progress=recorder.report,
        on_task=recorder.tasks.append,
    )

    assert recorder.tasks == list(fake.tasks)
    assert recorder.progress == [
        (0.0, "queued"),
        (0.0, "queued"),
        (0.0, "throttled (waiting for a Runway slot)"),
        (0.25, "running"),
        (0.75, "running"),
    ]
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert (video.width, video.height, video.codec, video.model) == (96, 64, "h264", "gen4.5")


def test_a_429_is_waited_out_for_its_retry_after(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    fake.rate_limit, fake.retry_after = 1, "1"
    began = time.monotonic()

    output = generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    assert time.monotonic() - began >= 1
    assert output.stat().st_size > 0
    assert len(fake.created) == 1


def test_a_failed_task_is_a_provider_error_with_runways_reason(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    fake.fail_with = ("INTERNAL.BAD_OUTPUT.CODE01", "The output did not pass our quality checks")

    with pytest.raises(ProviderError, match="did not pass our quality checks") as caught:
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    assert not caught.value.final
    assert "INTERNAL.BAD_OUTPUT.CODE01" in str(caught.value)
    assert fake.deleted == []  # an ended task has nothing left to cancel


def test_a_safety_refusal_is_final(fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    provider = runway(fake, monkeypatch)
    fake.fail_with = ("SAFETY.INPUT.TEXT", "The prompt was flagged by content moderation")

    with pytest.raises(ProviderError, match="moderation") as caught:
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    assert caught.value.final


def test_an_expired_output_url_is_replaced_by_a_fresh_one_read_from_the_task(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    fake.expired_outputs = 1

    output = generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    (task,) = fake.tasks.values()
    assert len(task.outputs) == 2
    assert [c.path for c in fake.calls if c.path.startswith("/files/")] == [
        f"/files/{task.id}-0.mp4",
        f"/files/{task.id}-1.mp4",
    ]
    assert output.stat().st_size > 0


def test_output_urls_that_stay_expired_end_in_a_clear_provider_error(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    fake.expired_outputs = 100

    with pytest.raises(ProviderError, match="HTTP 403 \\(expired\\?\\)"):
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)


def test_a_cancelled_job_cancels_the_runway_task(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    fake.hold = True

    with pytest.raises(JobCancelled):
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path, Recorder(cancel_at="running"))

    (task,) = fake.tasks.values()
    assert fake.deleted == [task.id]
    assert task.status == "CANCELLED"


def test_a_task_that_outlives_the_timeout_is_cancelled_and_fails(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch, timeout_seconds=0.5)
    fake.hold = True

    # The deadline may pass in the loop or during a status GET: one message either way.
    with pytest.raises(ProviderError, match=r"^runway: no video within 0\.5s"):
        generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path)

    assert fake.deleted == list(fake.tasks)


def test_cancel_of_a_finished_or_unknown_task_is_fine(
    fake: FakeRunway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = runway(fake, monkeypatch)
    recorder = Recorder()
    generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path, recorder)

    provider.cancel(recorder.tasks[0], timeout=2)
    provider.cancel("5c1f9a3e-0000-4000-8000-000000000000", timeout=2)

    assert fake.deleted == recorder.tasks
    assert [c.method for c in fake.calls].count("DELETE") == 2


def test_probe_reads_the_organization_and_pays_for_nothing(fake: FakeRunway, monkeypatch: pytest.MonkeyPatch) -> None:
    runway(fake, monkeypatch).probe(2)

    assert fake.paths() == ["/v1/organization"]
    assert fake.generation_calls() == []


def test_a_wrong_key_fails_the_probe_without_showing_any_key(fake: FakeRunway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNWAY_TEST_KEY", "key_wrong_31f2a9")
    values = {"name": "runway", "kind": "runway", "base_url": fake.base_url, "api_key_env": "RUNWAY_TEST_KEY"}
    provider = Runway(ProviderConfig.model_validate(values))

    with pytest.raises(ProviderError, match="HTTP 401") as caught:
        provider.probe(2)

    assert "key_wrong_31f2a9" not in str(caught.value)


def test_the_key_is_in_no_error_and_no_log_line(
    fake: FakeRunway,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider = runway(fake, monkeypatch)
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    with capture_logs() as logs:
        fake.hold = True
        for cancel_at in ("running", ""):
            try:
                generate(provider, provider.spec("p", JobOptions.parse({})), tmp_path, Recorder(cancel_at=cancel_at))
            except (JobCancelled, ProviderError) as exc:
                errors.append(repr(exc))
            fake.hold, fake.fail_with = False, ("SAFETY.INPUT.TEXT", "flagged")
        fake.rate_limit, fake.retry_after = 100, "30"
        with pytest.raises(ProviderError) as limited:
            runway(fake, monkeypatch, timeout_seconds=1).probe(1)
        errors.append(repr(limited.value))

    assert len(errors) == 3
    assert logs and any(entry["event"] == "runway.task_cancelled" for entry in logs)
    seen = "\n".join([*errors, repr(logs), caplog.text, *capsys.readouterr()])
    assert KEY not in seen
