"""What the worker's clients of the internal services (jobs_client.py, routing.py) share: the stub,
the service credential and a deadline on every call, and patience through an outage."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

import grpc

from services.core import tracing
from services.core.logging import get_logger

log = get_logger(__name__)
Stub = TypeVar("Stub")
Answer = TypeVar("Answer")
Metadata = tuple[tuple[str, str], ...]
# What a service answers while it (or its database) is down or frozen: worth asking again.
OUTAGE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 5.0


class InternalClient(Generic[Stub]):
    """A client of one internal gRPC service."""

    def __init__(
        self,
        stub: Stub,
        *,
        timeout: float,
        credentials: Metadata,
        patience: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._stub = stub
        self._timeout = timeout
        # The service credential (services/core/auth.py), sent with every call.
        self._credentials = credentials
        # How long a call that must land (an attempt's outcome) is asked again through an outage.
        self._patience = patience
        self._sleep = sleep

    def _metadata(self, request_id: str | None = None) -> Metadata:
        """The credential, and the request id when there is one."""
        found = self._credentials + ((("x-request-id", request_id),) if request_id else ())
        return found + tracing.trace_metadata()

    def _patiently(self, call: Callable[[], Answer], *, rpc: str, job_id: str) -> Answer:
        """call(), asked again while the service answers OUTAGE, for at most the patience (pauses
        doubling from FIRST_PAUSE to LONGEST_PAUSE): an outage of the service or its database
        then costs the attempt nothing. Any other error, or the outage outlasting the patience,
        is raised."""
        deadline = time.monotonic() + self._patience
        pause = FIRST_PAUSE
        while True:
            try:
                return call()
            except grpc.RpcError as exc:
                if exc.code() not in OUTAGE or time.monotonic() + pause > deadline:
                    raise
                log.warning("job.waiting_for_service", job_id=job_id, rpc=rpc, error=exc.code().name, retry_in=pause)
            self._sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)
