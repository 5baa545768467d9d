"""User keys as PostgreSQL stores them (the api_keys table, written by the jobs service), and the
guard of a service that takes API keys; services/core/auth.py holds the rules."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.auth import Authenticator, CallGuard
from services.core.models import ApiKey
from services.core.settings import CoreSettings


class StoredUserKeys:
    """User keys in PostgreSQL's api_keys table (written by the jobs service)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def find(self, digest: str) -> tuple[str, str] | None:
        async with self._sessions() as session:
            row = (await session.execute(select(ApiKey.id, ApiKey.user_id).where(ApiKey.key_hash == digest))).first()
        return None if row is None else (row.id, row.user_id)


def keyed_guard(
    settings: CoreSettings, *, internal: frozenset[str], user_keys: async_sessionmaker[AsyncSession]
) -> CallGuard:
    """The guard of a service that takes API keys: API_KEY as the admin key, the users' stored
    keys, both required in production; its internal services take the SECRET_KEY credential."""
    return CallGuard(
        secret_key=settings.secret_key.get_secret_value(),
        internal=internal,
        authenticator=Authenticator(
            admin_key=settings.api_key.get_secret_value(),
            user_keys=StoredUserKeys(user_keys),
            required=settings.app_env == "production",
        ),
    )
