"""Who calls: keys to principals, the user-key cache, and the operators' credential command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.core import auth
from services.core.errors import Unauthenticated
from tests.support.processes import ROOT, clean_env


class CountingKeys:
    """A key store of one user key that counts its lookups."""

    def __init__(self, key: str) -> None:
        self.digest = auth.key_hash(key)
        self.lookups = 0
        self.deleted = False

    async def find(self, digest: str) -> tuple[str, str] | None:
        self.lookups += 1
        return ("ckey", "user-1") if digest == self.digest and not self.deleted else None


async def test_the_admin_key_a_user_key_and_no_key_in_development() -> None:
    key = auth.new_user_key()
    authenticator = auth.Authenticator(admin_key="the-admin", user_keys=CountingKeys(key), required=False)

    assert await authenticator.principal("the-admin") == auth.ADMIN
    assert await authenticator.principal(None) == auth.ADMIN
    assert await authenticator.principal(key) == auth.Principal("user", user_id="user-1", key_id="ckey")
    with pytest.raises(Unauthenticated):
        await authenticator.principal("the-admin-but-longer")


async def test_production_refuses_a_missing_key() -> None:
    authenticator = auth.Authenticator(admin_key="the-admin", user_keys=None, required=True)

    with pytest.raises(Unauthenticated):
        await authenticator.principal(None)
    with pytest.raises(Unauthenticated):
        await authenticator.principal("")


async def test_a_user_key_is_looked_up_once_per_cache_period_and_a_deleted_one_fails_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("services.core.auth.time.monotonic", lambda: now[0])
    key = auth.new_user_key()
    keys = CountingKeys(key)
    authenticator = auth.Authenticator(admin_key="the-admin", user_keys=keys, required=True)

    for _ in range(5):
        await authenticator.principal(key)
    keys.deleted = True
    now[0] += auth.KEY_CACHE_SECONDS - 0.01
    still = await authenticator.principal(key)
    now[0] += 0.02

    assert keys.lookups == 1 and still.user_id == "user-1"
    with pytest.raises(Unauthenticated):
        await authenticator.principal(key)


def test_user_keys_are_random_and_only_their_hash_is_kept() -> None:
    first, second = auth.new_user_key(), auth.new_user_key()

    assert first != second and first.startswith(auth.USER_KEY_PREFIX) and len(first) == 47
    assert len(auth.key_hash(first)) == 64 and first not in auth.key_hash(first)


def test_the_credential_command_prints_the_header_the_internal_services_take() -> None:
    secret = "5c0d3f8a9b1e4c7d2a6f0e9b8c7d6a5f-cli"
    printed = subprocess.run(
        [sys.executable, "-m", "services.core.auth"],
        env=clean_env(SECRET_KEY=secret, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()

    assert (auth.SERVICE_CREDENTIAL_METADATA, printed) == auth.service_metadata(secret)[0]
