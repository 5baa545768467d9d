"""What the openai-compatible kind reads from a job and sends to create a video, by dialect.

- openai: OpenAI's multipart fields, `prompt`, `model`, `seconds`, `size` and the file
  `input_reference` (LiteLLM's proxy; vLLM-Omni takes them too).
- vllm-omni: those plus vLLM-Omni's own: `width`, `height`, `fps` and `num_frames` (when the
  job gives fps), `seed`, `negative_prompt`, `num_inference_steps`, `guidance_scale`.
- together: Together's JSON body (model, prompt, width, height, seconds, fps, seed,
  negative_prompt, steps, guidance_scale), the first frame given by URL (Together fetches it).
"""

from __future__ import annotations

from typing import Any

from services.core.generators.base import InvalidOptions, VideoSpec
from services.core.generators.capabilities import ratio_value
from services.core.generators.catalog import OPENAI_SIZES
from services.core.generators.input_images import InputImage
from services.core.generators.spec_mapping import within
from services.core.job.options import JobOptions

# Other shapes are made 720 pixels on their short side, in multiples of 16 (what diffusion
# models take), unless the job names its pixels.
SHORT_SIDE = 720
# The job's own fields a dialect passes on: metadata name -> (vLLM-Omni field, Together field,
# smallest, largest).
TUNING: dict[str, tuple[str, str, float, float]] = {
    "numInferenceSteps": ("num_inference_steps", "steps", 1, 200),
    "guidanceScale": ("guidance_scale", "guidance_scale", 0, 20),
}


def pixels(options: JobOptions, label: str, *, openai_sizes: bool) -> tuple[int, int]:
    """The width and height to ask for: OpenAI's size for the ratio when only those are legal,
    else the job's own pixels, else OpenAI's size for the ratio, else the ratio at SHORT_SIDE."""
    width, height = within("width", options.width, 16, 4096), within("height", options.height, 16, 4096)
    if width is not None and height is not None and not openai_sizes:
        return width, height
    if label in OPENAI_SIZES:
        return OPENAI_SIZES[label]
    ratio = ratio_value(label)
    long_side = 16 * round(SHORT_SIDE * max(ratio, 1 / ratio) / 16)
    return (long_side, SHORT_SIDE) if ratio >= 1 else (SHORT_SIDE, long_side)


def extras(options: JobOptions) -> dict[str, Any]:
    """The job's tuning fields (negativePrompt, numInferenceSteps, guidanceScale) within what the
    servers take."""
    found: dict[str, Any] = {}
    if options.negative_prompt is not None:
        found["negativePrompt"] = options.negative_prompt
    tuning = {"numInferenceSteps": options.inference_steps, "guidanceScale": options.guidance_scale}
    for name, (_, _, low, high) in TUNING.items():
        value = tuning[name]
        if value is None:
            continue
        if not low <= value <= high:
            kind = "a whole number" if name == "numInferenceSteps" else "a number"
            raise InvalidOptions(f"metadata.{name} must be {kind} from {low:g} to {high:g}")
        found[name] = value
    return found


def multipart(
    spec: VideoSpec, *, dialect: str, send_model: bool, image: InputImage | None
) -> dict[str, tuple[str | None, str | bytes] | tuple[str, bytes, str]]:
    """The multipart form of the create (openai and vllm-omni dialects)."""
    fields: dict[str, str] = {
        "prompt": spec.prompt,
        "seconds": str(int(spec.duration_seconds)),
        "size": f"{spec.width}x{spec.height}",
    }
    if send_model:
        fields["model"] = spec.model
    if dialect == "vllm-omni":
        fields.update(width=str(spec.width), height=str(spec.height))
        if spec.fps:
            fields.update(fps=str(spec.fps), num_frames=str(max(1, round(spec.duration_seconds * spec.fps))))
        if spec.seed is not None:
            fields["seed"] = str(spec.seed)
        if "negativePrompt" in spec.extra:
            fields["negative_prompt"] = spec.extra["negativePrompt"]
        for name, (field, *_) in TUNING.items():
            if name in spec.extra:
                fields[field] = str(spec.extra[name])
    form: dict[str, tuple[str | None, str | bytes] | tuple[str, bytes, str]] = {
        name: (None, value) for name, value in fields.items()
    }
    if image is not None:
        form["input_reference"] = (image.filename, image.data, image.content_type)
    return form


def together_body(spec: VideoSpec) -> dict[str, Any]:
    """Together's JSON create; its first frame goes by URL."""
    body: dict[str, Any] = {
        "model": spec.model,
        "prompt": spec.prompt,
        "width": spec.width,
        "height": spec.height,
        "seconds": str(int(spec.duration_seconds)),
    }
    if spec.fps:
        body["fps"] = spec.fps
    if spec.seed is not None:
        body["seed"] = spec.seed
    if "negativePrompt" in spec.extra:
        body["negative_prompt"] = spec.extra["negativePrompt"]
    for name, (_, field, *_) in TUNING.items():
        if name in spec.extra:
            body[field] = round(spec.extra[name])  # Together takes whole numbers here
    if spec.image_url:
        body["media"] = {"frame_images": [{"input_image": spec.image_url, "frame": "first"}]}
    return body
