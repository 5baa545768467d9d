"""Per-user API keys: created (the key shown once), listed and deleted by the admin.

Only each key's SHA-256 is stored (services/core/auth.py looks keys up by it). A deleted key
stops working once the services' caches forget it: within KEY_CACHE_SECONDS on every replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.auth import key_hash, new_user_key
from services.core.errors import NotFound
from services.core.ids import CUID_PATTERN, new_cuid
from services.core.logging import get_logger
from services.core.models import ApiKey
from services.jobs.domain import Page

log = get_logger(__name__)
# What lists show of a key: enough to tell keys apart, far too little to guess one.
PREFIX_CHARS = 8


class ApiKeyNotFound(NotFound):
    """No key has this id."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"API key {key_id!r} not found")


def checked_key_id(value: str) -> str:
    """The id, or ApiKeyNotFound at once when it cannot be a key's id."""
    if not CUID_PATTERN.fullmatch(value):
        raise ApiKeyNotFound(value[:64])
    return value


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: its row and, this once, the key itself."""

    row: ApiKey
    key: str


class ApiKeys:
    """The admin's use cases of API keys, each one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def create(self, *, user_id: str, name: str) -> IssuedKey:
        """A new key acting for user_id."""
        key = new_user_key()
        statement = (
            insert(ApiKey)
            .values(id=new_cuid(), user_id=user_id, name=name, key_hash=key_hash(key), prefix=key[:PREFIX_CHARS])
            .returning(ApiKey)
        )
        async with self._sessions.begin() as session:
            row = (await session.scalars(statement)).one()
        log.info("api_key.created", key_id=row.id, user_id=user_id, prefix=row.prefix)
        return IssuedKey(row=row, key=key)

    async def list(self, user_id: str | None, page: Page) -> tuple[Sequence[ApiKey], int]:
        """One page of keys (of user_id, when given), newest first, and their total."""
        conditions = [] if user_id is None else [ApiKey.user_id == user_id]
        rows = (
            select(ApiKey)
            .where(*conditions)
            .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
            .offset(page.skip)
            .limit(page.take)
        )
        total = select(func.count()).select_from(ApiKey).where(*conditions)
        async with self._sessions() as session:
            return (await session.scalars(rows)).all(), int(await session.scalar(total) or 0)

    async def delete(self, key_id: str) -> ApiKey:
        """Deletes the key and answers it as it was; ApiKeyNotFound for an unknown id."""
        statement = delete(ApiKey).where(ApiKey.id == key_id).returning(ApiKey)
        async with self._sessions.begin() as session:
            row = (await session.scalars(statement)).one_or_none()
        if row is None:
            raise ApiKeyNotFound(key_id)
        log.info("api_key.deleted", key_id=key_id, user_id=row.user_id)
        return row
