"""What the worker's clients of the internal services (jobs_client.py, routing.py) share: the stub,
and the service credential and a deadline on every call."""

from __future__ import annotations

from typing import Generic, TypeVar

Stub = TypeVar("Stub")
Metadata = tuple[tuple[str, str], ...]


class InternalClient(Generic[Stub]):
    """A client of one internal gRPC service."""

    def __init__(self, stub: Stub, *, timeout: float, credentials: Metadata) -> None:
        self._stub = stub
        self._timeout = timeout
        # The service credential (services/core/auth.py), sent with every call.
        self._credentials = credentials

    def _metadata(self, request_id: str | None = None) -> Metadata:
        """The credential, and the request id when there is one."""
        return self._credentials + ((("x-request-id", request_id),) if request_id else ())
