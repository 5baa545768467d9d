"""The providers use cases: probe, record outcomes, report status, route jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.errors import NotFound
from services.core.generators.base import ProviderError, VideoProvider
from services.core.generators.capabilities import VideoRequest
from services.core.generators.registry import ProviderConfig, RegistryConfig
from services.core.logging import get_logger
from services.core.provider_health import GAUGE, HealthPolicy, HealthState, Outcome, next_state
from services.core.provider_routing import Choice, choose
from services.providers import metrics, repository

log = get_logger(__name__)


class UnknownProvider(NotFound):
    """No provider of the registry has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"provider {name!r} is not configured")


@dataclass(frozen=True)
class ProviderView:
    """A provider as clients see it: registry facts and health."""

    config: ProviderConfig
    state: HealthState


@dataclass(frozen=True)
class ProbeResult:
    """What one probe showed."""

    provider: str
    success: bool
    state: HealthState
    response_time_ms: float
    error: str


class ProvidersService:
    """Owns provider_health; every outcome goes through one locked read-modify-write."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: RegistryConfig,
        providers: dict[str, VideoProvider],
        policy: HealthPolicy,
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._providers = providers
        self._policy = policy

    def config(self, name: str) -> ProviderConfig:
        """The registry entry, or UnknownProvider."""
        config = self._registry.get(name)
        if config is None:
            raise UnknownProvider(name)
        return config

    def configured(self, name: str) -> bool:
        """Whether the registry has a provider called name."""
        return self._registry.get(name) is not None

    async def register(self) -> None:
        """Makes sure every configured provider has a health row."""
        async with self._sessions.begin() as session:
            await repository.ensure_rows(session, self._registry.providers)
        for view in await self.status():
            metrics.PROVIDER_HEALTH.labels(view.config.name).set(GAUGE[view.state.status])

    async def status(self) -> Sequence[ProviderView]:
        """Every configured provider with its health, in registry order."""
        async with self._sessions() as session:
            rows = await repository.all_rows(session)
        return [
            ProviderView(config=config, state=repository.to_state(rows[config.name]))
            for config in self._registry.providers
            if config.name in rows
        ]

    async def record(self, name: str, outcome: Outcome) -> HealthState:
        """Applies one outcome to the provider's health."""
        return await self.record_many(name, [outcome])

    async def record_many(self, name: str, outcomes: Sequence[Outcome]) -> HealthState:
        """Applies outcomes to the provider's health in order, in one transaction (the row
        locked once); each change of status is logged."""
        changes: list[tuple[HealthState, HealthState]] = []
        async with self._sessions.begin() as session:
            row = await repository.locked_row(session, name)
            if row is None:
                await repository.ensure_rows(session, [self.config(name)])
                row = await repository.locked_row(session, name)
                assert row is not None
            state = repository.to_state(row)
            now = datetime.now(UTC)
            for outcome in outcomes:
                after = next_state(state, outcome, self._policy, now)
                if after.status != state.status:
                    changes.append((state, after))
                state = after
            await repository.save_state(session, name, state)
        metrics.PROVIDER_HEALTH.labels(name).set(GAUGE[state.status])
        for before, after in changes:
            log.info(
                "provider.status_changed",
                provider=name,
                before=before.status,
                after=after.status,
                error=after.last_error or None,
            )
        return state

    async def probe(self, name: str, timeout: float) -> ProbeResult:
        """Probes one provider within timeout seconds and records the outcome."""
        provider = self._providers.get(self.config(name).name)
        assert provider is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.to_thread(provider.probe, timeout)
            outcome = Outcome(success=True, latency_ms=(time.perf_counter() - started) * 1000)
        except TimeoutError:
            outcome = Outcome(success=False, error=f"no answer within {timeout:g}s")
        except ProviderError as exc:
            outcome = Outcome(success=False, error=str(exc), rate_limited=exc.rate_limited)
        except Exception as exc:
            outcome = Outcome(success=False, error=f"{type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - started
        metrics.PROBE_DURATION.labels(name).observe(elapsed)
        metrics.PROBES.labels(name, _label(outcome)).inc()
        state = await self.record(name, outcome)
        return ProbeResult(name, outcome.success, state, elapsed * 1000, outcome.error)

    async def probe_all(self, timeout: float) -> list[ProbeResult]:
        """Probes every provider at once."""
        return list(await asyncio.gather(*(self.probe(c.name, timeout) for c in self._registry.providers)))

    async def select(self, *, requested: str | None, model: str, exclude: set[str], request: VideoRequest) -> Choice:
        """The provider and model for one try of a job: the named provider if it can make the
        video and is usable, else the best usable one that can (services/core/provider_routing.py)."""
        if requested:
            self.config(requested)
        views = await self.status()
        candidates = [(view.config, view.state) for view in views]
        ranked = choose(
            candidates, request=request, model=model, requested=requested, exclude=exclude, now=datetime.now(UTC)
        )
        return ranked[0]

    async def sync(self, outcomes: Sequence[tuple[str, Outcome]]) -> Sequence[ProviderView]:
        """A worker's batch of real calls, each counted like a probe and applied in order, one
        transaction a provider, then every provider's health: what the worker routes from until
        its next sync."""
        by_provider: dict[str, list[Outcome]] = {}
        for name, outcome in outcomes:
            self.config(name)
            by_provider.setdefault(name, []).append(outcome)
        for name, batch in by_provider.items():
            for outcome in batch:
                metrics.CALLS.labels(name, _label(outcome)).inc()
            await self.record_many(name, batch)
        return await self.status()

    async def report(self, name: str, outcome: Outcome) -> HealthState:
        """A worker's real call to a provider, counted like a probe."""
        self.config(name)
        metrics.CALLS.labels(name, _label(outcome)).inc()
        return await self.record(name, outcome)


def _label(outcome: Outcome) -> str:
    """The outcome as the calls and probes counters label it."""
    return "success" if outcome.success else ("rate_limited" if outcome.rate_limited else "failure")
