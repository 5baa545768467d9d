"""The rules of routing: which provider and model can make the video a job asks for, and in
which order to try them (healthiest, then cheapest for this video, then fastest)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import grpc

from services.core.errors import DomainError, FailedPrecondition
from services.core.generators.capabilities import Fit, VideoRequest, estimated_cost, fit
from services.core.generators.registry import ProviderConfig
from services.core.provider_health import HealthState, is_open, rank


class CannotMake(DomainError):
    """No configured provider (or not the one named) can make the video asked: waiting will not
    change that, so the job fails at once with this message."""

    code = grpc.StatusCode.OUT_OF_RANGE


@dataclass(frozen=True)
class Choice:
    """One provider and model for a try, with its legal values for the job and its price."""

    config: ProviderConfig
    model: str
    # None when nobody says what the model makes (a plugin's): it gets what the job asks.
    fit: Fit | None
    cost_usd: float


def options(config: ProviderConfig, model: str, request: VideoRequest) -> tuple[list[Choice], list[str]]:
    """The choices config offers for the request (of model, when the job names one), and why
    each of its other models cannot make it."""
    if model and not config.supports(model):
        return [], [f"{config.name} has no model {model}"]
    models = [model] if model else (config.available_models() or [config.model])
    choices, reasons = [], []
    for name in models:
        capabilities = config.capabilities_of(name)
        if capabilities is None:
            cost = config.cost_per_request
            choices.append(Choice(config, name, None, cost))
            continue
        fitted = fit(capabilities, request)
        if isinstance(fitted, str):
            reasons.append(f"{config.name} ({name}) {fitted}")
            continue
        cost = estimated_cost(capabilities, fitted.duration_seconds, config.cost_per_request)
        choices.append(Choice(config, name, fitted, cost))
    return choices, reasons


def choose(
    candidates: Sequence[tuple[ProviderConfig, HealthState]],
    *,
    request: VideoRequest,
    model: str,
    requested: str | None,
    exclude: set[str],
    now: datetime,
) -> list[Choice]:
    """Every usable choice for the job, best first. CannotMake when no configured provider (or
    not the one named) can make the video; FailedPrecondition when those that can are
    unhealthy or already failed this attempt."""
    if requested is not None:
        candidates = [(config, state) for config, state in candidates if config.name == requested]
    able: list[tuple[Choice, HealthState]] = []
    reasons: list[str] = []
    for config, state in candidates:
        choices, why = options(config, model, request)
        able.extend((choice, state) for choice in choices)
        reasons.extend(why)
    if not able:
        who = f"provider {requested!r}" if requested else "no configured provider"
        verb = "cannot make" if requested else "can make"
        raise CannotMake(f"{who} {verb} {request.describe()}: " + "; ".join(reasons[:6]))
    usable = [(c, s) for c, s in able if c.config.name not in exclude and not is_open(s, now)]
    if not usable:
        if requested is not None and requested in exclude:
            raise FailedPrecondition(f"provider {requested!r} already failed this attempt")
        if requested is not None:
            state = able[0][1]
            raise FailedPrecondition(f"provider {requested!r} is unhealthy: {state.last_error or 'failing'}")
        raise FailedPrecondition(
            f"no usable provider for {request.describe()} now: every one that can is excluded or unhealthy"
        )
    usable.sort(key=lambda pair: (rank(pair[1]), pair[0].cost_usd, pair[1].avg_response_time_ms, pair[0].config.name))
    return [choice for choice, _ in usable]
