"""The comfyui kind against a fake ComfyUI server: the graph it submits, the socket and the
history it follows, failures, cancel, probe and the key."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from services.core.errors import InvalidArgument
from services.core.generators.base import InvalidOptions, JobCancelled, ProviderError
from services.core.generators.comfyui import ComfyUI
from services.core.generators.input_images import ImageFetcher
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions
from tests.support.fake_comfyui import FakeComfyUI
from tests.support.image_host import ImageHost, png

KEY = "comfy-proxy-key-5e8a1c"
MODEL = "wan-test"
# A small text-to-video graph: the placeholders where a real workflow has them.
GRAPH: dict[str, Any] = {
    "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "wan.safetensors", "weight_dtype": "default"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}, cinematic", "clip": ["1", 0]}},
    "3": {"class_type": "Wan22ImageToVideoLatent",
          "inputs": {"width": "{{width:1280}}", "height": "{{height:704}}", "length": "{{frames}}", "batch_size": 1}},
    "4": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["2", 0], "latent_image": ["3", 0],
                                               "seed": "{{seed}}", "steps": 20}},
    "5": {"class_type": "CreateVideo", "inputs": {"images": ["4", 0], "fps": "{{fps:24}}"}},
    "6": {"class_type": "SaveVideo", "inputs": {"video": ["5", 0], "filename_prefix": "video/videogen"}},
}  # fmt: skip
IMAGE_GRAPH = {**GRAPH, "7": {"class_type": "LoadImage", "inputs": {"image": "{{image}}"}}}


@pytest.fixture
def server() -> Iterator[FakeComfyUI]:
    fake = FakeComfyUI(key=KEY).start()
    yield fake
    fake.stop()


def adapter(
    server: FakeComfyUI,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    *,
    graph: dict[str, Any] = GRAPH,
    capabilities: dict[str, Any] | None = None,
    images: ImageFetcher | None = None,
    **fields: object,
) -> ComfyUI:
    monkeypatch.setenv("COMFY_TEST_KEY", KEY)
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(graph))
    values: dict[str, object] = {
        "name": "comfy",
        "kind": "comfyui",
        "base_url": server.base_url,
        "api_key_env": "COMFY_TEST_KEY",
        "workflow": str(workflow),
        "models": [MODEL],
        "capabilities": {MODEL: capabilities or {"min_seconds": 1, "max_seconds": 5}},
        "poll_interval_seconds": 0.05,
        "timeout_seconds": 10,
        **fields,
    }
    return ComfyUI(ProviderConfig.model_validate(values), images=images)


class Recorder:
    """The progress and tasks a run reports; raises JobCancelled at the first stage matching cancel_at."""

    def __init__(self, cancel_at: str = "") -> None:
        self.seen: list[tuple[float, str]] = []
        self.tasks: list[str] = []
        self.cancel_at = cancel_at

    def progress(self, fraction: float, stage: str) -> None:
        self.seen.append((fraction, stage))
        if self.cancel_at and stage.startswith(self.cancel_at):
            raise JobCancelled("job")

    def stages(self) -> list[str]:
        return [stage for _, stage in self.seen]


def run(provider: ComfyUI, tmp_path: Path, recorder: Recorder | None = None, **metadata: object) -> Path:
    recorder = recorder or Recorder()
    spec = provider.spec("a fox in the snow", JobOptions.parse({"durationSeconds": 2, **metadata}))
    output = tmp_path / "out.mp4"
    provider.generate(spec, output=output, progress=recorder.progress, on_task=recorder.tasks.append)
    return output


def test_generates_a_real_video_from_the_filled_workflow(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch, tmp_path)
    options = JobOptions.parse({"durationSeconds": 2, "width": 1280, "height": 720, "fps": 16, "seed": 7})
    spec = provider.spec("a fox in the snow", options)
    recorder = Recorder()

    video = provider.generate(
        spec, output=tmp_path / "v.mp4", progress=recorder.progress, on_task=recorder.tasks.append
    )

    [body] = server.submitted()
    graph = body["prompt"]
    assert graph["2"]["inputs"]["text"] == "a fox in the snow, cinematic"
    assert graph["3"]["inputs"] == {"width": 1280, "height": 704, "length": 33, "batch_size": 1}
    assert (graph["4"]["inputs"]["seed"], graph["5"]["inputs"]["fps"]) == (7, 16)
    assert graph["4"]["inputs"]["model"] == ["1", 0]
    assert recorder.tasks == [body["prompt_id"]] and body["client_id"]
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    assert (video.width, video.height, video.model, video.codec) == (96, 64, MODEL, "h264")


def test_without_a_size_the_workflows_default_area_takes_the_shape_asked(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch, tmp_path)

    default = provider.spec("p", JobOptions.parse({}))
    portrait = provider.spec("p", JobOptions.parse({"aspectRatio": "9:16"}))
    square = provider.spec("p", JobOptions.parse({"aspectRatio": "1:1"}))

    assert (default.width, default.height, default.fps, default.duration_seconds) == (1280, 704, 24, 4)
    assert (portrait.width, portrait.height) == (704, 1280)
    assert (square.width, square.height) == (960, 960)


def test_the_length_goes_to_the_nearest_legal_one_and_a_far_one_is_refused(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch, tmp_path, capabilities={"durations": [2, 4], "aspect_ratios": ["16:9"]})

    assert provider.spec("p", JobOptions.parse({"durationSeconds": 3})).duration_seconds == 4
    assert provider.spec("p", JobOptions.parse({"aspectRatio": "1280:736"})).aspect_ratio == "16:9"
    with pytest.raises(InvalidOptions, match=r"metadata\.durationSeconds: comfy \(wan-test\) makes 2 or 4 s"):
        provider.spec("p", JobOptions.parse({"durationSeconds": 10}))
    with pytest.raises(InvalidOptions, match=r"metadata\.aspectRatio"):
        provider.spec("p", JobOptions.parse({"aspectRatio": "9:16"}))


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"width": 1280}, "width"),
        ({"width": 8192, "height": 720}, "width"),
        ({"imageUrl": "https://example.com/a.png"}, "imageUrl"),
        ({"model": "another"}, "model"),
    ],
)
def test_options_it_cannot_take_are_invalid_naming_the_field(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, metadata: dict[str, Any], field: str
) -> None:
    provider = adapter(server, monkeypatch, tmp_path)

    with pytest.raises(InvalidOptions, match=rf"metadata\.{field}"):
        provider.spec(
            "p",
            JobOptions.parse({k: v for k, v in metadata.items() if k != "model"}),
            model=str(metadata.get("model", "")),
        )


def test_progress_follows_the_queue_then_the_samplers_steps(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.ahead, server.steps = 2, 4
    server.queue_gate.clear()
    recorder = Recorder()

    def opens_the_queue(fraction: float, stage: str) -> None:
        recorder.progress(fraction, stage)
        if stage == "queued (position 3)":
            server.queue_gate.set()

    provider = adapter(server, monkeypatch, tmp_path)
    spec = provider.spec("p", JobOptions.parse({"durationSeconds": 2}))
    provider.generate(spec, output=tmp_path / "v.mp4", progress=opens_the_queue, on_task=lambda task: None)

    stages = recorder.stages()
    assert stages[0] == "queued (position 3)"
    assert {"sampling 1/4", "sampling 4/4", "downloading"} <= set(stages)
    fractions = [fraction for fraction, _ in recorder.seen]
    assert fractions == sorted(fractions)
    assert {s: f for f, s in recorder.seen}["sampling 2/4"] == pytest.approx(0.05 + 0.85 * 2 / 4)


def test_the_socket_announcing_the_end_brings_the_history_read_forward(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch, tmp_path, poll_interval_seconds=30)
    began = time.monotonic()

    run(provider, tmp_path)

    assert time.monotonic() - began < 5


def test_a_dropped_socket_falls_back_to_polling_the_history(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.drop_at_step = 1
    recorder = Recorder()

    output = run(adapter(server, monkeypatch, tmp_path), tmp_path, recorder)

    assert output.stat().st_size > 0
    assert server.sockets_opened == 1
    assert "sampling 2/3" not in recorder.stages()


def test_a_server_without_the_socket_is_followed_by_polling_alone(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.refuse_socket = True
    recorder = Recorder()

    output = run(adapter(server, monkeypatch, tmp_path), tmp_path, recorder)

    assert output.stat().st_size > 0
    assert "running" in recorder.stages()
    assert not any(stage.startswith("sampling") for stage in recorder.stages())


@pytest.mark.parametrize(
    ("outcome", "reason"),
    [
        ("error", r"node 3 \(KSampler\) failed: torch\.OutOfMemoryError: Allocation on device"),
        ("interrupted", r"interrupted on the server at node 8 \(VAEDecode\)"),
        ("vanish", r"left the server's queue without a result"),
        ("no_video", r"saved no video"),
    ],
)
def test_a_run_that_fails_on_the_server_is_a_provider_error_with_its_reason(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, outcome: str, reason: str
) -> None:
    server.outcome = outcome

    with pytest.raises(ProviderError, match=reason) as caught:
        run(adapter(server, monkeypatch, tmp_path), tmp_path)

    assert not caught.value.final and not caught.value.rate_limited


def test_a_workflow_the_server_refuses_is_a_provider_error_naming_the_node(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.refuse = True

    with pytest.raises(ProviderError, match=r"node 37 \(UNETLoader\): Value not in list: unet_name") as caught:
        run(adapter(server, monkeypatch, tmp_path), tmp_path)

    assert not isinstance(caught.value, InvalidOptions)
    assert "workflow.json" in str(caught.value)


def test_429_waits_for_retry_after_and_then_succeeds(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.rate_limit, server.retry_after = 1, "1"
    began = time.monotonic()

    output = run(adapter(server, monkeypatch, tmp_path), tmp_path)

    assert time.monotonic() - began >= 1
    assert output.stat().st_size > 0
    assert server.calls[0].path == "/prompt" and len(server.submitted()) == 2


def test_a_missing_output_is_fetched_again_then_refused_clearly(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch, tmp_path)
    server.view_failures = 1
    assert run(provider, tmp_path).stat().st_size > 0

    server.view_failures = 10
    with pytest.raises(ProviderError, match=r"download: HTTP 404"):
        run(provider, tmp_path)
    # One failure and one success, then every try of the second run.
    assert server.paths("GET").count("/view") == 2 + 3


def test_cancel_while_it_runs_interrupts_that_prompt(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.hold.clear()
    recorder = Recorder(cancel_at="sampling")

    with pytest.raises(JobCancelled):
        run(adapter(server, monkeypatch, tmp_path), tmp_path, recorder)

    [prompt_id] = recorder.tasks
    assert server.bodies("POST", "/interrupt") == [{"prompt_id": prompt_id}]
    assert server.bodies("POST", "/queue") == [{"delete": [prompt_id]}]


def test_cancel_while_it_waits_deletes_it_from_the_queue_and_interrupts_nothing(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.ahead = 1
    server.queue_gate.clear()
    recorder = Recorder(cancel_at="queued (position")

    with pytest.raises(JobCancelled):
        run(adapter(server, monkeypatch, tmp_path), tmp_path, recorder)

    [prompt_id] = recorder.tasks
    assert server.bodies("POST", "/queue") == [{"delete": [prompt_id]}]
    assert server.bodies("POST", "/interrupt") == []
    assert server.runs[prompt_id].state == "deleted"


def test_a_run_past_its_timeout_is_interrupted(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.hold.clear()
    recorder = Recorder()

    with pytest.raises(ProviderError, match="no video within 1 s"):
        run(adapter(server, monkeypatch, tmp_path, timeout_seconds=1), tmp_path, recorder)

    assert server.bodies("POST", "/interrupt") == [{"prompt_id": recorder.tasks[0]}]


def test_cancel_of_a_finished_or_unknown_prompt_is_fine(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch, tmp_path)
    recorder = Recorder()
    run(provider, tmp_path, recorder)

    provider.cancel(recorder.tasks[0], timeout=2)
    provider.cancel("no-such-prompt", timeout=2)

    assert server.bodies("POST", "/interrupt") == []


def test_an_old_server_that_picks_its_own_id_is_followed_by_that_id(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server.own_ids = True
    recorder = Recorder()

    assert run(adapter(server, monkeypatch, tmp_path), tmp_path, recorder).stat().st_size > 0
    assert recorder.tasks[-1].startswith("server-") and len(recorder.tasks) == 2


def test_probe_asks_for_system_stats_and_generates_nothing(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    adapter(server, monkeypatch, tmp_path).probe(2)

    assert server.paths() == ["/system_stats"]


@pytest.fixture
def image_host() -> Iterator[ImageHost]:
    host = ImageHost().start()
    yield host
    host.stop()


IMAGE_TO_VIDEO = {"max_seconds": 5, "text_to_video": False, "image_to_video": True}


def test_an_image_workflow_uploads_the_jobs_image_first(
    server: FakeComfyUI, image_host: ImageHost, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    images = image_host.fetcher()
    provider = adapter(server, monkeypatch, tmp_path, graph=IMAGE_GRAPH, capabilities=IMAGE_TO_VIDEO, images=images)
    recorder = Recorder()

    run(provider, tmp_path, recorder, imageUrl=image_host.url("first.png"))

    [upload] = server.uploads
    name = f"videogen-{recorder.tasks[0]}.png"
    assert (upload["image"]["filename"], upload["image"]["data"], upload["type"]) == (name, png(), "input")
    assert server.submitted()[0]["prompt"]["7"]["inputs"]["image"] == name
    assert server.paths("POST")[:2] == ["/upload/image", "/prompt"]


def test_an_input_image_must_be_a_public_https_image(
    server: FakeComfyUI, image_host: ImageHost, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    provider = adapter(server, monkeypatch, tmp_path, graph=IMAGE_GRAPH, capabilities=IMAGE_TO_VIDEO)
    images = image_host.fetcher()
    trusting = adapter(server, monkeypatch, tmp_path, graph=IMAGE_GRAPH, capabilities=IMAGE_TO_VIDEO, images=images)

    with pytest.raises(InvalidArgument, match=r"metadata\.imageUrl: must be an https URL"):
        JobOptions.parse({"imageUrl": server.file_url("first.png", png())})
    with pytest.raises(InvalidOptions, match="must be on a public address"):
        run(provider, tmp_path, imageUrl="https://127.0.0.1/first.png")
    with pytest.raises(InvalidOptions, match="must be a JPEG, PNG or WebP image"):
        run(trusting, tmp_path, imageUrl=image_host.url("page.png", b"<html>", "text/html"))
    assert server.submitted() == []


def test_the_key_goes_in_headers_only_never_in_errors_or_logs(
    server: FakeComfyUI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    run(adapter(server, monkeypatch, tmp_path), tmp_path)
    assert server.sockets_opened == 1  # the fake refuses a socket without the key
    assert {c.headers["authorization"] for c in server.calls if not c.path.startswith("/files/")} == {f"Bearer {KEY}"}

    monkeypatch.setenv("COMFY_TEST_KEY", "wrong-key-3f9d")
    wrong = ComfyUI(ProviderConfig.model_validate({**_entry(server, tmp_path), "api_key_env": "COMFY_TEST_KEY"}))
    with pytest.raises(ProviderError, match="401") as caught:
        run(wrong, tmp_path)

    text = caplog.text + capsys.readouterr().out + str(caught.value)
    assert KEY not in text and "wrong-key-3f9d" not in text


def _entry(server: FakeComfyUI, tmp_path: Path) -> dict[str, Any]:
    return {
        "name": "comfy",
        "kind": "comfyui",
        "base_url": server.base_url,
        "workflow": str(tmp_path / "workflow.json"),
        "models": [MODEL],
        "capabilities": {MODEL: {"max_seconds": 5}},
        "poll_interval_seconds": 0.05,
        "timeout_seconds": 5,
    }
