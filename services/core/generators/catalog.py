"""What each provider kind knows without being configured: its host, its models, what each makes
and costs, and (for the model-hosting kinds) how each spells its input.

The registry checks entries against this, and each kind reads its own part; nothing here imports
a kind, so a kind and the registry can both import it.
"""

from __future__ import annotations

from services.core.generators.base import KindInfo
from services.core.generators.capabilities import ModelCapabilities
from services.core.generators.hosted import HostedModel, InputStyle, seconds_suffixed, seconds_text, whole_seconds

LOCAL_MODEL = "local-pyav-h264-v1"

# openai-compatible: an entry that lists no models gets whatever its server runs, asked in
# OpenAI's shape. The sizes OpenAI's shape allows, by aspect ratio:
OPENAI_SIZES = {"16:9": (1280, 720), "9:16": (720, 1280), "7:4": (1792, 1024), "4:7": (1024, 1792)}
SERVER_DEFAULT = "server-default"
OPENAI_SHAPE = ModelCapabilities(durations=[4, 8, 12], aspect_ratios=list(OPENAI_SIZES))

# runway: ratios are output sizes in pixels; these are the ones both endpoints take for the model.
RUNWAY_WIDE = ["1280:720", "720:1280"]
RUNWAY_GEN4_IMAGE = [*RUNWAY_WIDE, "1104:832", "832:1104", "960:960", "1584:672"]
RUNWAY_VEO = [*RUNWAY_WIDE, "1920:1080", "1080:1920"]
# The sizes a model the kind does not know (an entry's own) is asked in, nearest shape first.
RUNWAY_ALL_SIZES = [*RUNWAY_VEO, *RUNWAY_GEN4_IMAGE[len(RUNWAY_WIDE) :]]
# Credits cost $0.01; credits per second from Runway's model table (runwayml/skills, 2026-04).
RUNWAY_MODELS: dict[str, ModelCapabilities] = {
    "gen4.5": ModelCapabilities(min_seconds=2, max_seconds=10, aspect_ratios=RUNWAY_WIDE, image_to_video=True,
                                price_per_second=0.12),
    "gen4_turbo": ModelCapabilities(min_seconds=2, max_seconds=10, aspect_ratios=RUNWAY_GEN4_IMAGE,
                                    text_to_video=False, image_to_video=True, price_per_second=0.05),
    # Veo without audio (we ask for none): the low end of Runway's 20-40 and 10-15 credits/s.
    "veo3.1": ModelCapabilities(durations=[4, 6, 8], aspect_ratios=RUNWAY_VEO, image_to_video=True,
                                price_per_second=0.20),
    "veo3.1_fast": ModelCapabilities(durations=[4, 6, 8], aspect_ratios=RUNWAY_VEO, image_to_video=True,
                                     price_per_second=0.10),
    "veo3": ModelCapabilities(durations=[8], aspect_ratios=RUNWAY_VEO, image_to_video=True, price_per_second=0.40),
}  # fmt: skip

LUMA_MODEL = "ray-3.2"
# $0.30 a 5 s block at 720p SDR (a 10 s video bills as two): Luma's list price as partners
# publish it (Runware); Luma's own pricing page gives the table without per-second figures.
LUMA_MODELS = {
    LUMA_MODEL: ModelCapabilities(
        durations=[5, 10],
        aspect_ratios=["16:9", "9:16", "1:1", "4:3", "3:4", "21:9"],
        image_to_video=True,
        price_per_second=0.06,
    )
}

_FAL_VEO = InputStyle(duration=seconds_suffixed)
_FAL_KLING = InputStyle(duration=seconds_text, seed=False)
_FAL_KLING_IMAGE = InputStyle(duration=seconds_text, seed=False, aspect_ratio=False)
# Prices: each model's fal.ai page, at its default settings (Veo: 720p with audio).
FAL_MODELS: dict[str, HostedModel] = {
    "fal-ai/veo3.1": HostedModel(
        ModelCapabilities(durations=[4, 6, 8], aspect_ratios=["16:9", "9:16"], price_per_second=0.40), _FAL_VEO
    ),
    "fal-ai/veo3.1/image-to-video": HostedModel(
        ModelCapabilities(
            durations=[4, 6, 8],
            aspect_ratios=["16:9", "9:16"],
            text_to_video=False,
            image_to_video=True,
            price_per_second=0.40,
        ),
        _FAL_VEO,
    ),
    "fal-ai/kling-video/v3/turbo/pro/text-to-video": HostedModel(
        ModelCapabilities(durations=list(range(3, 16)), aspect_ratios=["16:9", "9:16", "1:1"], price_per_second=0.14),
        _FAL_KLING,
    ),
    # Its video takes the shape of the image.
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video": HostedModel(
        ModelCapabilities(durations=[5, 10], text_to_video=False, image_to_video=True, price_per_second=0.07),
        _FAL_KLING_IMAGE,
    ),
}
# Any other model: duration as a string of whole seconds, as most of fal's video models take it.
FAL_OTHER = InputStyle()

_REPLICATE_VEO = InputStyle(duration=whole_seconds, image_field="image", fixed={"resolution": "720p"})
_REPLICATE_KLING = InputStyle(duration=whole_seconds, image_field="start_image", seed=False)
# Prices: Replicate's per-second prices at the models' settings here (Veo: 720p with audio).
REPLICATE_MODELS: dict[str, HostedModel] = {
    "google/veo-3.1": HostedModel(
        ModelCapabilities(
            durations=[4, 6, 8], aspect_ratios=["16:9", "9:16"], image_to_video=True, price_per_second=0.40
        ),
        _REPLICATE_VEO,
    ),
    "kwaivgi/kling-v2.5-turbo-pro": HostedModel(
        ModelCapabilities(
            durations=[5, 10], aspect_ratios=["16:9", "9:16", "1:1"], image_to_video=True, price_per_second=0.07
        ),
        _REPLICATE_KLING,
    ),
}
# Any other model: duration as a JSON integer, the first frame as `image`.
REPLICATE_OTHER = InputStyle(duration=whole_seconds, image_field="image")


def _hosted(models: dict[str, HostedModel]) -> dict[str, ModelCapabilities]:
    return {name: model.capabilities for name, model in models.items()}


# Every kind by its registry name.
KINDS: dict[str, KindInfo] = {
    "local": KindInfo(
        base_url="",
        models={LOCAL_MODEL: ModelCapabilities(min_seconds=1, max_seconds=60, price_per_second=0.0)},
        default_model=LOCAL_MODEL,
        needs_key=False,
        cancellable=False,
    ),
    # No host of its own: OpenAI's endpoint closed, so an entry always names its server.
    "openai-compatible": KindInfo(
        base_url=None, models={SERVER_DEFAULT: OPENAI_SHAPE}, default_model=SERVER_DEFAULT, needs_key=False
    ),
    "runway": KindInfo(base_url="https://api.dev.runwayml.com", models=RUNWAY_MODELS, default_model="gen4.5"),
    # Luma's API cannot stop a generation.
    "luma": KindInfo(
        base_url="https://agents.lumalabs.ai/v1", models=LUMA_MODELS, default_model=LUMA_MODEL, cancellable=False
    ),
    "fal": KindInfo(base_url="https://queue.fal.run", models=_hosted(FAL_MODELS), default_model="fal-ai/veo3.1"),
    "replicate": KindInfo(
        base_url="https://api.replicate.com/v1", models=_hosted(REPLICATE_MODELS), default_model="google/veo-3.1"
    ),
    # No host of its own and no models: the entry names the server, the workflow and what it makes.
    "comfyui": KindInfo(base_url=None, models={}, needs_key=False),
}
