"""A job's options: parsed once from its metadata, each wrong field refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from services.core.errors import InvalidArgument
from services.core.generators.capabilities import VideoRequest
from services.core.job.options import JobOptions
from services.core.job.rules import parse_json_object


def test_every_option_is_read_typed() -> None:
    options = JobOptions.parse(
        {
            "priority": "high", "provider": "runway", "model": "gen4.5", "durationSeconds": 10, "width": 1920.0,
            "height": 1080, "fps": 24, "seed": 7, "imageUrl": "https://example.com/first.png",
            "negativePrompt": "blur", "numInferenceSteps": 30, "guidanceScale": 5.5, "modelInput": {"loop": True},
            "clientTag": "passes through untouched",
        }
    )  # fmt: skip

    assert options == JobOptions(
        priority="high", provider="runway", model="gen4.5", duration_seconds=10.0, width=1920, height=1080,
        fps=24.0, seed=7, image_url="https://example.com/first.png", negative_prompt="blur", inference_steps=30,
        guidance_scale=5.5, model_input={"loop": True},
    )  # fmt: skip
    assert options.queue == "high_priority"
    assert options.request == VideoRequest(duration_seconds=10, aspect_ratio=16 / 9, aspect_label="16:9",
                                           image_input=True)  # fmt: skip


def test_nothing_said_is_the_default_queue_and_length() -> None:
    options = JobOptions.parse({})

    assert (options.queue, options.video_seconds, options.request) == ("default", 4.0, VideoRequest())


@pytest.mark.parametrize("priority", ["urgent", 3, None, "HIGH"])
def test_any_other_priority_is_the_default_queue(priority: Any) -> None:
    assert JobOptions.parse({"priority": priority}).queue == "default"


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"durationSeconds": "long"}, "metadata.durationSeconds"),
        ({"durationSeconds": 0}, "metadata.durationSeconds"),
        ({"durationSeconds": True}, "metadata.durationSeconds"),
        ({"durationSeconds": 7200}, "metadata.durationSeconds"),
        ({"width": 12.5}, "metadata.width"),
        ({"height": -720}, "metadata.height"),
        ({"aspectRatio": "wide"}, "metadata.aspectRatio"),
        ({"fps": "24"}, "metadata.fps"),
        ({"seed": -1}, "metadata.seed"),
        ({"imageUrl": "http://example.com/a.png"}, "metadata.imageUrl"),
        ({"imageUrl": "https://example.com/a b.png"}, "metadata.imageUrl"),
        ({"provider": "Bad Name"}, "metadata.provider"),
        ({"model": ""}, "metadata.model"),
        ({"modelInput": ["x"]}, "metadata.modelInput"),
        ({"numInferenceSteps": 0}, "metadata.numInferenceSteps"),
        # Wrong values no provider kind sees any more: the job is refused at create.
        ({"durationSeconds": "ten"}, "metadata.durationSeconds"),
        ({"durationSeconds": "long", "width": -5, "height": 720, "imageUrl": 3}, "metadata.durationSeconds"),
        ({"width": -5, "height": 720}, "metadata.width"),
        ({"width": True}, "metadata.width"),
        ({"height": "tall"}, "metadata.height"),
        ({"fps": "fast"}, "metadata.fps"),
        ({"fps": 0}, "metadata.fps"),
        ({"seed": 1.5}, "metadata.seed"),
        ({"seed": True}, "metadata.seed"),
        ({"imageUrl": 3}, "metadata.imageUrl"),
        ({"imageUrl": 42}, "metadata.imageUrl"),
        ({"imageUrl": "ftp://x/y.png"}, "metadata.imageUrl"),
        ({"imageUrl": "http://plain.example/a.png"}, "metadata.imageUrl"),
        ({"negativePrompt": 7}, "metadata.negativePrompt"),
        ({"numInferenceSteps": 2.5}, "metadata.numInferenceSteps"),
    ],
)
def test_a_wrong_option_is_refused_naming_its_field(metadata: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        JobOptions.parse(metadata)

    assert caught.value.field == field


def test_deep_json_is_refused_before_it_is_parsed() -> None:
    # json.loads would recurse 5,000 levels (to the interpreter's limit) before failing.
    with pytest.raises(InvalidArgument, match="nested at most 64 deep"):
        parse_json_object("[" * 5000 + "]" * 5000, field="metadata", max_bytes=16 * 1024)
    with pytest.raises(InvalidArgument, match="nested at most 64 deep"):
        parse_json_object('{"a": ' + "[" * 64 + "]" * 64 + "}", field="metadata", max_bytes=16 * 1024)
    brackets_in_strings = '{"a": "' + "[" * 500 + '", "b": [[1]]}'
    assert parse_json_object(brackets_in_strings, field="metadata", max_bytes=16 * 1024)["b"] == [[1]]
