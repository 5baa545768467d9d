"""Generating a job's video on the provider routing picks, failing over to the next on a provider error."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path

from services.core import tracing
from services.core.generators.base import ProviderError, RenderedVideo, VideoProvider, VideoSpec
from services.core.job.options import JobOptions
from services.core.logging import get_logger
from services.worker.liveness import Liveness
from services.worker.routing import Choice, Router, RoutingUnavailable, Unroutable
from services.worker.slots import ProviderSlots
from videogen.v1 import jobs_pb2

log = get_logger(__name__)


class AttemptFailed(Exception):
    """Every provider this attempt could use failed; the job may be retried (unless final)."""

    def __init__(self, message: str, provider: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.final = final


class ProviderFailover:
    """Tries the providers routing picks for one attempt, one after the other, within their caps."""

    def __init__(
        self,
        *,
        router: Router,
        providers: Mapping[str, VideoProvider],
        concurrency: Mapping[str, int],
        slots: ProviderSlots | None,
    ) -> None:
        self._router = router
        self._providers = providers
        # Providers' caps on our jobs running there at once, held in slots across workers.
        self._concurrency = concurrency
        self._slots = slots

    def generate(
        self, job: jobs_pb2.Job, options: JobOptions, partial: Path, liveness: Liveness
    ) -> tuple[Choice, RenderedVideo, int]:
        """Generates with the provider routing picks, failing over to the next one on a provider
        error; a provider the client named gets no substitute, and a final error (a safety
        refusal) none either."""
        requested, model, video_request = options.provider, options.model or "", options.request
        tried: list[str] = []
        failure: AttemptFailed | None = None
        while True:
            try:
                choice = self._router.select(
                    job.id, requested=requested, model=model, exclude=tried, video=video_request
                )
            except RoutingUnavailable:
                # No provider is left to fail over to: the attempt fails with the last provider's error.
                if failure is not None:
                    raise failure from None
                raise
            provider, spec = self._prepare(choice, job, options)
            began = time.monotonic()
            try:
                with (
                    self._slot(choice.provider, liveness),
                    tracing.span(
                        f"provider {choice.provider}",
                        kind="client",
                        attributes={"videogen.provider": choice.provider, "videogen.model": choice.model},
                    ),
                ):
                    video = provider.generate(
                        spec,
                        output=partial,
                        progress=liveness.reporter(),
                        on_task=liveness.task_recorder(choice.provider),
                    )
            except ProviderError as exc:
                self._router.report(choice.provider, error=exc, latency_ms=(time.monotonic() - began) * 1000)
                tried.append(choice.provider)
                log.warning("job.provider_failed", job_id=job.id, provider=choice.provider, error=str(exc))
                failure = AttemptFailed(str(exc), choice.provider, final=exc.final)
                if requested or exc.final:
                    raise failure from exc
                continue
            elapsed_ms = int((time.monotonic() - began) * 1000)
            self._router.report(choice.provider, error=None, latency_ms=elapsed_ms)
            return choice, video, elapsed_ms

    def _prepare(self, choice: Choice, job: jobs_pb2.Job, options: JobOptions) -> tuple[VideoProvider, VideoSpec]:
        """The provider chosen and the video to ask it for; Unroutable when this worker lacks it."""
        provider = self._providers.get(choice.provider)
        if provider is None:
            raise Unroutable(f"provider {choice.provider!r} is not configured on this worker", choice.provider)
        return provider, provider.spec(job.prompt, options, model=choice.model)

    def _slot(self, provider: str, liveness: Liveness) -> AbstractContextManager[None]:
        """One of the provider's slots when it has a cap on our jobs running there, else nothing."""
        limit = self._concurrency.get(provider)
        if limit is None or self._slots is None:
            return contextlib.nullcontext()
        return liveness.hold_slot(self._slots, provider, limit=limit)
