"""Routing: which provider and model can make the video a job asks for, and in which order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.core.errors import FailedPrecondition
from services.core.generators.capabilities import ModelCapabilities, VideoRequest, fit
from services.core.generators.registry import ProviderConfig
from services.core.job.options import JobOptions
from services.core.provider_health import Health, HealthState
from services.core.provider_routing import CannotMake, choose

NOW = datetime(2026, 12, 2, tzinfo=UTC)
HEALTHY = HealthState(Health.HEALTHY, 0, 100.0, None, "", None)
SLOW = HealthState(Health.HEALTHY, 0, 900.0, None, "", None)
DEGRADED = HealthState(Health.DEGRADED, 1, 50.0, None, "", None)
DOWN = HealthState(Health.UNHEALTHY, 3, 50.0, NOW + timedelta(seconds=30), "HTTP 500", None)
SHORT_WIDE = ModelCapabilities(durations=[4, 6, 8], aspect_ratios=["16:9", "9:16"], price_per_second=0.10)
LONG_WIDE = ModelCapabilities(durations=[5, 10], aspect_ratios=["16:9", "9:16", "1:1"], price_per_second=0.15)
FROM_IMAGE = ModelCapabilities(
    durations=[5, 10], aspect_ratios=["16:9"], text_to_video=False, image_to_video=True, price_per_second=0.05
)


def provider(name: str, **capabilities: ModelCapabilities) -> ProviderConfig:
    fields: dict[str, Any] = {"capabilities": capabilities, "models": list(capabilities)}
    return ProviderConfig(name=name, kind="plugin", plugin="tests.support.scripted_provider:ScriptedProvider", **fields)


def pick(candidates: list[tuple[ProviderConfig, HealthState]], **asked: Any) -> list[tuple[str, str]]:
    options = {"model": "", "requested": None, "exclude": set(), **asked}
    request = options.pop("request", VideoRequest())
    return [(c.config.name, c.model) for c in choose(candidates, request=request, now=NOW, **options)]


def test_a_ten_second_wide_job_goes_to_a_provider_that_can_make_it() -> None:
    short, long = provider("short", veo=SHORT_WIDE), provider("long", ray=LONG_WIDE)
    request = JobOptions.parse({"durationSeconds": 10, "width": 1920, "height": 1080}).request

    chosen = choose([(short, HEALTHY), (long, HEALTHY)], request=request, model="", requested=None, exclude=set(),
                    now=NOW)  # fmt: skip

    assert [(c.config.name, c.model) for c in chosen] == [("long", "ray")]
    assert chosen[0].fit is not None and (chosen[0].fit.duration_seconds, chosen[0].fit.aspect_ratio) == (10, "16:9")
    assert chosen[0].cost_usd == pytest.approx(1.5)


def test_an_image_job_skips_models_without_image_input_and_a_text_job_those_that_need_one() -> None:
    mixed = provider("mixed", text=LONG_WIDE, image=FROM_IMAGE)
    text_only = provider("text-only", veo=SHORT_WIDE)
    candidates = [(mixed, HEALTHY), (text_only, HEALTHY)]

    from_image = pick(
        candidates, request=JobOptions.parse({"durationSeconds": 5, "imageUrl": "https://x/y.png"}).request
    )
    from_text = pick(candidates, request=JobOptions.parse({"durationSeconds": 5}).request)

    assert from_image == [("mixed", "image")]
    assert ("mixed", "image") not in from_text and ("mixed", "text") in from_text


def test_a_job_nobody_can_make_fails_naming_what_it_asked() -> None:
    candidates = [(provider("short", veo=SHORT_WIDE), HEALTHY), (provider("long", ray=LONG_WIDE), DOWN)]

    with pytest.raises(CannotMake) as caught:
        pick(candidates, request=JobOptions.parse({"durationSeconds": 30, "aspectRatio": "21:9"}).request)

    message = str(caught.value)
    assert "a 30 s 21:9 video from text" in message
    assert "short (veo) makes 4, 6 or 8 s" in message and "long (ray) makes 5 or 10 s" in message


def test_a_named_provider_that_cannot_make_the_video_is_refused_for_good() -> None:
    candidates = [(provider("short", veo=SHORT_WIDE), HEALTHY), (provider("long", ray=LONG_WIDE), HEALTHY)]

    with pytest.raises(CannotMake, match="provider 'short' cannot make a 10 s video"):
        pick(candidates, requested="short", request=JobOptions.parse({"durationSeconds": 10}).request)


def test_providers_that_could_but_are_down_or_excluded_are_not_a_reason_to_fail_the_job() -> None:
    candidates = [(provider("a", veo=SHORT_WIDE), DOWN), (provider("b", veo=SHORT_WIDE), HEALTHY)]

    with pytest.raises(FailedPrecondition):
        pick(candidates, exclude={"b"})
    assert pick(candidates) == [("b", "veo")]


def test_order_is_healthy_then_cheapest_for_this_video_then_fastest() -> None:
    cheap = ModelCapabilities(durations=[4, 8], price_per_second=0.05)
    pricey = ModelCapabilities(durations=[4, 8], price_per_second=0.50)
    candidates = [
        (provider("cheap-slow", m=cheap), SLOW),
        (provider("cheap-fast", m=cheap), HEALTHY),
        (provider("pricey", m=pricey), HEALTHY),
        (provider("flaky", m=cheap), DEGRADED),
        (provider("down", m=cheap), DOWN),
    ]

    assert [name for name, _ in pick(candidates)] == ["cheap-fast", "cheap-slow", "pricey", "flaky"]
    later = choose(candidates, request=VideoRequest(), model="", requested=None, exclude=set(),
                   now=NOW + timedelta(seconds=31))  # fmt: skip
    after_cooldown = [choice.config.name for choice in later]
    assert "down" in after_cooldown


@pytest.mark.parametrize(
    ("asked", "duration", "ratio"),
    [({"durationSeconds": 4}, 5, None), ({"durationSeconds": 9.4}, 10, None),
     ({"width": 1280, "height": 720}, 5, "16:9"), ({"aspectRatio": "9:16", "durationSeconds": 6}, 5, "9:16"),
     ({"width": 1000, "height": 1000}, 5, "1:1")],
)  # fmt: skip
def test_a_job_maps_to_the_models_nearest_legal_values(
    asked: dict[str, Any], duration: float, ratio: str | None
) -> None:
    fitted = fit(LONG_WIDE, JobOptions.parse(asked).request)

    assert not isinstance(fitted, str)
    assert (fitted.duration_seconds, fitted.aspect_ratio) == (duration, ratio)


def test_a_value_too_far_from_every_legal_one_does_not_fit() -> None:
    assert fit(SHORT_WIDE, JobOptions.parse({"durationSeconds": 10}).request) == "makes 4, 6 or 8 s"
    assert fit(SHORT_WIDE, JobOptions.parse({"aspectRatio": "1:1"}).request) == "makes 16:9, 9:16"
    assert fit(FROM_IMAGE, JobOptions.parse({}).request) == "needs an input image"
