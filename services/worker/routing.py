"""The worker's side of routing: ask ProviderService which provider, tell it how the call went."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from services.core.generators.base import ProviderError
from services.core.generators.capabilities import VideoRequest
from services.core.logging import get_logger
from services.worker.internal import InternalClient
from videogen.v1 import routing_pb2, routing_pb2_grpc

log = get_logger(__name__)


class Unroutable(Exception):
    """No provider can take the job, and waiting will not change that (unknown or unhealthy
    named provider): the job fails with this message."""

    def __init__(self, message: str, provider: str = "") -> None:
        super().__init__(message)
        self.provider = provider


class RoutingUnavailable(Exception):
    """No provider is usable right now, or the providers service does not answer."""


@dataclass(frozen=True)
class Choice:
    """The provider and model for one try, and what the video is estimated to cost there."""

    provider: str
    model: str
    cost_usd: float = 0.0


class Router(InternalClient[routing_pb2_grpc.ProviderRoutingServiceStub]):
    """A ProviderService client with the worker's error semantics."""

    def select(
        self, job_id: str, *, requested: str | None, model: str, exclude: list[str], video: VideoRequest
    ) -> Choice:
        """The provider to try next for the video asked; Unroutable (the job fails: nobody can
        make it) or RoutingUnavailable (not now) when there is none."""
        request = routing_pb2.SelectProviderRequest(
            job_id=job_id, exclude=exclude, duration_seconds=video.duration_seconds, image_input=video.image_input
        )
        if video.aspect_label:
            request.aspect_ratio = video.aspect_label
        if requested:
            request.requested_provider = requested
        if model:
            request.requested_model = model
        try:
            # An outage of the providers service (or its database) is waited out, not an attempt lost.
            reply = self._patiently(
                lambda: self._stub.SelectProvider(request, timeout=self._timeout, metadata=self._metadata()),
                rpc="SelectProvider",
                job_id=job_id,
            )
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
                raise Unroutable(details, requested or "") from exc
            if code == grpc.StatusCode.FAILED_PRECONDITION and requested:
                raise Unroutable(details, requested) from exc
            if code == grpc.StatusCode.FAILED_PRECONDITION:
                raise RoutingUnavailable(details) from exc
            raise RoutingUnavailable(f"the providers service did not answer ({code.name})") from exc
        return Choice(provider=reply.provider, model=reply.model, cost_usd=reply.cost_usd)

    def report(self, provider: str, *, error: ProviderError | None, latency_ms: float) -> None:
        """Tells ProviderService how a real call went; never fails the job."""
        request = routing_pb2.ReportOutcomeRequest(
            provider=provider,
            success=error is None,
            latency_ms=max(0.0, latency_ms),
            error=str(error)[:4000] if error else "",
            rate_limited=bool(error and error.rate_limited),
        )
        try:
            self._stub.ReportOutcome(request, timeout=self._timeout, metadata=self._metadata())
        except grpc.RpcError as exc:
            log.warning("provider.outcome_unreported", provider=provider, error=exc.code().name)
