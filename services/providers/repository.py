"""SQLAlchemy access to provider_health; no commits here."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.core.generators.registry import ProviderConfig
from services.core.ids import new_cuid
from services.core.models import ProviderHealth
from services.core.provider_health import Health, HealthState


def to_state(row: ProviderHealth) -> HealthState:
    """The domain state of a row."""
    return HealthState(
        status=Health(row.status),
        consecutive_failures=row.consecutive_failures,
        avg_response_time_ms=row.avg_response_time_ms,
        circuit_open_until=row.circuit_open_until,
        last_error=row.last_error,
        last_checked_at=row.last_checked_at,
    )


async def ensure_rows(session: AsyncSession, providers: Sequence[ProviderConfig]) -> None:
    """A row for every configured provider, with the cost the registry states."""
    for config in providers:
        statement = insert(ProviderHealth).values(
            id=new_cuid(), provider=config.name, cost_per_request=config.cost_per_request
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[ProviderHealth.provider], set_={"cost_per_request": config.cost_per_request}
            )
        )


async def all_rows(session: AsyncSession) -> dict[str, ProviderHealth]:
    """Every row by provider name."""
    rows = (await session.scalars(select(ProviderHealth))).all()
    return {row.provider: row for row in rows}


async def locked_row(session: AsyncSession, provider: str) -> ProviderHealth | None:
    """The provider's row, locked until the transaction ends (outcomes apply one at a time)."""
    return await session.scalar(select(ProviderHealth).where(ProviderHealth.provider == provider).with_for_update())


async def save_state(session: AsyncSession, provider: str, state: HealthState) -> None:
    """Writes a new state."""
    await session.execute(
        update(ProviderHealth)
        .where(ProviderHealth.provider == provider)
        .values(
            status=state.status.value,
            consecutive_failures=state.consecutive_failures,
            avg_response_time_ms=state.avg_response_time_ms,
            circuit_open_until=state.circuit_open_until,
            last_error=state.last_error,
            last_checked_at=state.last_checked_at,
            updated_at=state.last_checked_at,
        )
    )
