"""The worker's side of routing: it routes from a table of provider health that it syncs with
ProviderService at most every WORKER_ROUTING_TABLE_TTL, by the rules ProviderService itself
routes by (services/core/provider_routing.py), and it batches how its calls went into the next sync.

An attempt then costs no routing call of its own: one sync a second per process, whatever the
rate of jobs, against two calls per attempt (SelectProvider, ReportOutcome) before.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc

from services.core.errors import FailedPrecondition
from services.core.generators.base import ProviderError
from services.core.generators.capabilities import VideoRequest
from services.core.generators.registry import ProviderConfig, RegistryConfig
from services.core.logging import get_logger
from services.core.provider_health import Health, HealthState
from services.core.provider_routing import CannotMake, choose
from services.worker.internal import OUTAGE, InternalClient, Metadata
from videogen.v1 import providers_pb2, routing_pb2, routing_pb2_grpc

log = get_logger(__name__)

_HEALTH = {
    providers_pb2.PROVIDER_HEALTH_HEALTHY: Health.HEALTHY,
    providers_pb2.PROVIDER_HEALTH_DEGRADED: Health.DEGRADED,
    providers_pb2.PROVIDER_HEALTH_UNHEALTHY: Health.UNHEALTHY,
}
# Outcomes wait this long for others to share their sync; a sync that failed is tried again
# after a pause doubling up to the last.
BATCH_WINDOW = 0.25
FLUSH_PAUSES = (0.5, 5.0)
# Outcomes kept while the providers service does not answer, the newest (older ones are dropped).
PENDING_MAX = 1000
# While the providers service does not answer, a table this old is still routed from; an older
# one is synced patiently (WORKER_OUTAGE_PATIENCE), as the attempt's outcome is.
STALE_TABLE_MAX_AGE = 60.0


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


Table = list[tuple[ProviderConfig, HealthState]]


class Router(InternalClient[routing_pb2_grpc.ProviderRoutingServiceStub]):
    """Routes a process's attempts from a synced table of provider health; one per process
    (made after the fork: its flusher thread is its own)."""

    def __init__(
        self,
        stub: routing_pb2_grpc.ProviderRoutingServiceStub,
        *,
        registry: RegistryConfig,
        timeout: float,
        credentials: Metadata,
        patience: float = 0.0,
        ttl: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(stub, timeout=timeout, credentials=credentials, patience=patience, sleep=sleep)
        self._configs = {config.name: config for config in registry.providers}
        self._ttl = ttl
        self._clock = clock
        # One sync at a time; the outcomes not yet sent under their own lock (a provider's
        # thread adds them while a sync runs).
        self._syncing = threading.Lock()
        self._pending_lock = threading.Lock()
        self._pending: list[routing_pb2.ReportOutcomeRequest] = []
        self._table: Table | None = None
        self._synced_at = float("-inf")
        self._wake = threading.Event()
        self._flusher_pid = 0

    def select(
        self, job_id: str, *, requested: str | None, model: str, exclude: list[str], video: VideoRequest
    ) -> Choice:
        """The provider to try next for the video asked; Unroutable (the job fails: nobody can
        make it) or RoutingUnavailable (not now) when there is none."""
        if requested and requested not in self._configs:
            raise Unroutable(f"provider {requested!r} is not configured", requested)
        table, fresh = self._current_table(job_id)
        try:
            return _pick(table, requested=requested, model=model, exclude=exclude, video=video)
        except (Unroutable, RoutingUnavailable):
            if fresh:
                raise
        # A no from a table up to a TTL old is asked again of a fresh one: a provider that healed
        # meanwhile must not fail a job.
        table, _ = self._current_table(job_id, force=True)
        return _pick(table, requested=requested, model=model, exclude=exclude, video=video)

    def report(self, provider: str, *, error: ProviderError | None, latency_ms: float) -> None:
        """Notes how a real call went. A success rides the next sync (at most BATCH_WINDOW away,
        never waited for); a failure is sent at once, so that the job's retry or the next job
        routes from the health it made (a circuit opened). Never fails the job."""
        outcome = routing_pb2.ReportOutcomeRequest(
            provider=provider,
            success=error is None,
            latency_ms=max(0.0, latency_ms),
            error=str(error)[:4000] if error else "",
            rate_limited=bool(error and error.rate_limited),
        )
        with self._pending_lock:
            self._pending.append(outcome)
            del self._pending[:-PENDING_MAX]
        if outcome.success or outcome.rate_limited or not self._sync_now(self._timeout):
            self._start_flusher()
            self._wake.set()

    def flush(self, timeout: float) -> None:
        """Sends the outcomes not yet sent, within timeout seconds (before the process exits)."""
        with self._pending_lock:
            if not self._pending:
                return
        self._sync_now(timeout)

    def _sync_now(self, timeout: float) -> bool:
        """One sync of what is pending, when no other sync holds on past timeout; whether it
        landed (what did not stays pending)."""
        if not self._syncing.acquire(timeout=timeout):
            return False
        try:
            self._sync(timeout)
            return True
        except grpc.RpcError as exc:
            log.warning("routing.outcomes_unreported", error=exc.code().name, pending=len(self._pending))
            return False
        finally:
            self._syncing.release()

    def _current_table(self, job_id: str, *, force: bool = False) -> tuple[Table, bool]:
        """The table, and whether this call synced it: synced first when older than the TTL
        (or forced). While the providers service does not answer, a table under
        STALE_TABLE_MAX_AGE still serves; without one, the sync is asked again patiently, and
        RoutingUnavailable raised when that runs out."""
        with self._syncing:
            age = self._clock() - self._synced_at
            if self._table is not None and age < self._ttl and not force:
                return self._table, False
            try:
                self._sync(self._timeout)
            except grpc.RpcError as exc:
                if self._table is not None and age < STALE_TABLE_MAX_AGE:
                    log.warning("routing.table_stale", age_seconds=round(age, 1), error=exc.code().name)
                    return self._table, False
                if exc.code() not in OUTAGE:
                    raise RoutingUnavailable(f"the providers service refused a sync ({exc.code().name})") from exc
                try:
                    self._patiently(lambda: self._sync(self._timeout), rpc="SyncRouting", job_id=job_id)
                except grpc.RpcError as again:
                    raise RoutingUnavailable(f"the providers service did not answer ({again.code().name})") from again
            assert self._table is not None
            return self._table, True

    def _sync(self, timeout: float) -> None:
        """One SyncRouting with the outcomes pending (put back when it fails, dropped when the
        service calls them invalid: a worker whose registry differs from the service's)."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
        request = routing_pb2.SyncRoutingRequest(outcomes=batch)
        try:
            reply = self._stub.SyncRouting(request, timeout=timeout, metadata=self._metadata())
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                log.error("routing.outcomes_dropped", count=len(batch), error=exc.details())
            else:
                with self._pending_lock:
                    self._pending[:0] = batch
                    del self._pending[:-PENDING_MAX]
            raise
        self._table = self._table_of(reply)
        self._synced_at = self._clock()

    def _table_of(self, reply: routing_pb2.SyncRoutingResponse) -> Table:
        """The configured providers the service knows, in its order, with their health."""
        now = datetime.now(UTC)
        table: Table = []
        for row in reply.providers:
            config = self._configs.get(row.provider)
            if config is None:
                continue
            state = HealthState(
                status=_HEALTH.get(row.status, Health.HEALTHY),
                consecutive_failures=row.consecutive_failures,
                avg_response_time_ms=row.avg_response_time_ms,
                circuit_open_until=now + timedelta(seconds=row.circuit_open_seconds)
                if row.circuit_open_seconds > 0
                else None,
                last_error=row.last_error,
                last_checked_at=None,
            )
            table.append((config, state))
        return table

    def _start_flusher(self) -> None:
        """The process's flusher thread, started on its first outcome (a fork leaves it behind)."""
        if self._flusher_pid == os.getpid():
            return
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_loop, name="routing-flusher", daemon=True).start()

    def _flush_loop(self) -> None:
        """Sends pending outcomes a BATCH_WINDOW after the first of them, forever."""
        pause = FLUSH_PAUSES[0]
        while True:
            self._wake.wait()
            time.sleep(BATCH_WINDOW)
            self._wake.clear()
            with self._syncing:
                with self._pending_lock:
                    if not self._pending:
                        continue
                try:
                    self._sync(self._timeout)
                    pause = FLUSH_PAUSES[0]
                    continue
                except grpc.RpcError as exc:
                    log.warning("routing.outcomes_unreported", error=exc.code().name, retry_in=pause)
            time.sleep(pause)
            pause = min(pause * 2, FLUSH_PAUSES[1])
            self._wake.set()


def _pick(table: Table, *, requested: str | None, model: str, exclude: list[str], video: VideoRequest) -> Choice:
    """The best choice of the table for the video (services/core/provider_routing.py's rules);
    Unroutable or RoutingUnavailable when there is none."""
    try:
        ranked = choose(
            table, request=video, model=model, requested=requested, exclude=set(exclude), now=datetime.now(UTC)
        )
    except CannotMake as exc:
        raise Unroutable(str(exc), requested or "") from None
    except FailedPrecondition as exc:
        if requested:
            raise Unroutable(str(exc), requested) from None
        raise RoutingUnavailable(str(exc)) from None
    best = ranked[0]
    return Choice(provider=best.config.name, model=best.model, cost_usd=best.cost_usd)
