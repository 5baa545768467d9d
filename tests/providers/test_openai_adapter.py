"""The openai-compatible kind against a local server speaking the OpenAI Videos API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from services.core.generators.base import InvalidOptions, JobCancelled, ProviderError
from services.core.generators.openai_videos import OpenAIVideos
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions
from tests.support.fake_openai import FakeOpenAI

KEY = "sk-test-7f3a9c1e5b"
SORA_SHAPE = {"durations": [4, 8, 12], "aspect_ratios": ["16:9", "9:16", "7:4", "4:7"]}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI(api_key=KEY).start()
    yield fake
    fake.stop()


def adapter(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, **fields: object) -> OpenAIVideos:
    monkeypatch.setenv("FAKE_OPENAI_KEY", KEY)
    values: dict[str, object] = {
        "name": "openai",
        "kind": "openai-compatible",
        "base_url": server.base_url,
        "api_key_env": "FAKE_OPENAI_KEY",
        "models": ["sora-2", "sora-2-pro"],
        "capabilities": {"sora-2": SORA_SHAPE, "sora-2-pro": SORA_SHAPE},
        "poll_interval_seconds": 0.05,
        "timeout_seconds": 10,
        **fields,
    }
    return OpenAIVideos(ProviderConfig.model_validate(values))


def run(provider: OpenAIVideos, tmp_path: Path, **metadata: object) -> tuple[Path, list[float]]:
    seen: list[float] = []
    spec = provider.spec(
        "a fox in the snow", JobOptions.parse({"durationSeconds": 4, "width": 1280, "height": 720, **metadata})
    )
    output = tmp_path / "out.mp4"
    provider.generate(
        spec, output=output, progress=lambda fraction, stage: seen.append(fraction), on_task=lambda task_id: None
    )
    return output, seen


def test_generates_polls_and_downloads_a_real_video(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch)
    spec = provider.spec(
        "a fox in the snow", JobOptions.parse({"durationSeconds": 8, "width": 1280, "height": 720}), model="sora-2-pro"
    )

    video = provider.generate(spec, output=tmp_path / "v.mp4", progress=lambda f, s: None, on_task=lambda task_id: None)

    assert server.created[0]["prompt"] == "a fox in the snow"
    assert (server.created[0]["model"], server.created[0]["seconds"], server.created[0]["size"]) == (
        "sora-2-pro",
        "8",
        "1280x720",
    )
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (video.width, video.height)
    assert (video.width, video.height, video.fps, video.model) == (96, 64, 8.0, "sora-2-pro")
    assert [call.method for call in server.calls] == ["POST", "GET", "GET", "GET"]


def test_a_failed_video_is_a_provider_error(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.fail_videos = True

    with pytest.raises(ProviderError, match="blocked by moderation"):
        run(adapter(server, monkeypatch), tmp_path)


def test_a_server_error_is_a_provider_error(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.failing = True

    with pytest.raises(ProviderError, match="HTTP 500") as caught:
        run(adapter(server, monkeypatch), tmp_path)

    assert not caught.value.rate_limited


def test_429_waits_for_retry_after_and_then_succeeds(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.rate_limit, server.retry_after = 2, "1"
    began = time.monotonic()

    output, _ = run(adapter(server, monkeypatch), tmp_path)

    assert time.monotonic() - began >= 2
    assert output.stat().st_size > 0


def test_429_beyond_the_deadline_is_rate_limited_not_down(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.rate_limit, server.retry_after = 100, "30"

    with pytest.raises(ProviderError) as caught:
        run(adapter(server, monkeypatch, timeout_seconds=2), tmp_path)

    assert caught.value.rate_limited


def test_a_slow_server_times_out(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server.delay = 3
    began = time.monotonic()

    with pytest.raises(ProviderError, match="timed out"):
        run(adapter(server, monkeypatch, timeout_seconds=1), tmp_path)

    assert time.monotonic() - began < 2.5


def test_a_wrong_key_fails_without_showing_the_key(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch)
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-wrong-key-123")

    with pytest.raises(ProviderError) as caught:
        provider.probe(2)

    assert "401" in str(caught.value)
    assert "sk-wrong-key-123" not in str(caught.value)


def test_a_cancelled_job_deletes_the_remote_video(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch)
    spec = provider.spec("p", JobOptions.parse({"durationSeconds": 4}))

    def cancel(fraction: float, stage: str) -> None:
        raise JobCancelled("job")

    with pytest.raises(JobCancelled):
        provider.generate(spec, output=tmp_path / "v.mp4", progress=cancel, on_task=lambda task_id: None)

    assert "/v1/videos/video_1" in server.paths("DELETE")


@pytest.mark.parametrize("metadata", [{"durationSeconds": 20}, {"width": 5}])
def test_options_the_api_cannot_take_are_invalid(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, metadata: dict[str, object]
) -> None:
    with pytest.raises(InvalidOptions):
        adapter(server, monkeypatch).spec("p", JobOptions.parse(metadata))


def test_probe_lists_videos(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter(server, monkeypatch).probe(2)

    assert [(call.method, call.path) for call in server.calls] == [("GET", "/v1/videos")]
