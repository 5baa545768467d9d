"""Who calls: API keys (the admin's, API_KEY, and per-user ones) for the public services, the
service credential for the internal ones, checked for every RPC by the server interceptor.

The caller's Principal is then bound for the call (current_principal), and the rules of
JobService and ProviderService read it: a user key acts for its user only (docs/security.md).
Where user keys are stored is services/core/stored_keys.py's: the worker, which takes only the
service credential, imports no database code through this module.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from services.core.errors import PermissionDenied, Unauthenticated
from services.core.secrets import SERVICE_TOKEN, derive, urlsafe
from services.core.settings import CoreSettings, load_settings

API_KEY_METADATA = "x-api-key"
SERVICE_CREDENTIAL_METADATA = "authorization"
USER_KEY_PREFIX = "vgk_"
# How long a looked-up user key is trusted without asking the database again: a deleted key
# stops working within this (plus one lookup) on every replica. The contract says 5 s.
KEY_CACHE_SECONDS = 2.0
_KEY_CACHE_ENTRIES = 10_000
# grpc.health.v1 stays open: kubelet and load balancer probes carry no key.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})

Kind = Literal["admin", "user", "service"]


@dataclass(frozen=True)
class Principal:
    """Who a call acts for: the admin, one user (through a user key) or another service."""

    kind: Kind
    user_id: str | None = None
    key_id: str | None = None

    @property
    def is_admin(self) -> bool:
        """The admin key, or no key in development."""
        return self.kind == "admin"


ADMIN = Principal("admin")
SERVICE = Principal("service")
_PRINCIPAL: ContextVar[Principal | None] = ContextVar("principal", default=None)


def current_principal() -> Principal:
    """The principal of the call in progress; a call that was never admitted has none (and fails)."""
    principal = _PRINCIPAL.get()
    if principal is None:
        raise RuntimeError("no principal is bound: the call did not pass the CallGuard")
    return principal


def bind_principal(principal: Principal) -> None:
    """Binds the principal for the rest of the call's task."""
    _PRINCIPAL.set(principal)


def owner_scope() -> str | None:
    """The user whose jobs the caller may see (None: every user's, for the admin)."""
    principal = current_principal()
    return principal.user_id if principal.kind == "user" else None


def require_admin(action: str) -> None:
    """PermissionDenied unless the caller holds the admin key."""
    if not current_principal().is_admin:
        raise PermissionDenied(f"{action} needs the admin key")


def acting_user(requested: str, *, field: str = "user_id") -> str:
    """The user a call acts for: a user key's own (requested may be empty or must name it), or
    what the admin requested (checked by the caller's validation)."""
    principal = current_principal()
    if principal.kind != "user":
        return requested
    assert principal.user_id is not None
    if requested and requested != principal.user_id:
        raise PermissionDenied(f"{field}: this key acts for another user and cannot act for {requested!r}")
    return principal.user_id


def new_user_key() -> str:
    """A fresh user key: the prefix and 256 random bits."""
    return USER_KEY_PREFIX + urlsafe(secrets.token_bytes(32))


def key_hash(key: str) -> str:
    """What is stored of a key: its hex SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()


def service_token(secret_key: str) -> str:
    """The service credential that the internal services take, derived from SECRET_KEY."""
    return urlsafe(derive(secret_key, SERVICE_TOKEN))


def service_metadata(secret_key: str) -> tuple[tuple[str, str], ...]:
    """The metadata that presents the service credential on an internal call."""
    return ((SERVICE_CREDENTIAL_METADATA, f"Bearer {service_token(secret_key)}"),)


class UserKeys(Protocol):
    """Where user keys are looked up."""

    async def find(self, digest: str) -> tuple[str, str] | None:
        """(key id, user id) of the key with this hash, if one exists."""


class Authenticator:
    """Turns a presented API key into a Principal: the admin key, a user key (looked up, then
    trusted for KEY_CACHE_SECONDS), or none (the admin in development, refused in production)."""

    def __init__(self, *, admin_key: str, user_keys: UserKeys | None, required: bool) -> None:
        self._admin_key = admin_key.encode()
        self._user_keys = user_keys
        self._required = required
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    async def principal(self, presented: str | None) -> Principal:
        """Who the key acts for; Unauthenticated for a missing (in production) or unknown key."""
        if not presented:
            if self._required:
                raise Unauthenticated("a valid x-api-key is required")
            return ADMIN
        if hmac.compare_digest(presented.encode(), self._admin_key):
            return ADMIN
        if self._user_keys is None or not presented.startswith(USER_KEY_PREFIX):
            raise Unauthenticated("the x-api-key is not valid")
        return await self._user(key_hash(presented))

    async def _user(self, digest: str) -> Principal:
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        assert self._user_keys is not None
        found = await self._user_keys.find(digest)
        if found is None:
            self._cache.pop(digest, None)
            raise Unauthenticated("the x-api-key is not valid")
        principal = Principal("user", user_id=found[1], key_id=found[0])
        self._cache[digest] = (now + KEY_CACHE_SECONDS, principal)
        self._cache.move_to_end(digest)
        while len(self._cache) > _KEY_CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return principal


Metadata = Iterable[tuple[str, Any]]


def _first(metadata: Metadata | None, name: str) -> str | None:
    for key, value in metadata or ():
        if key == name and isinstance(value, str):
            return value
    return None


class CallGuard:
    """Admits each call by its service: an internal one needs the service credential, a public
    one (and reflection) an API key through the Authenticator, health nothing. A server that
    takes no API keys (no Authenticator: the worker) takes the service credential only."""

    def __init__(self, *, secret_key: str, internal: frozenset[str], authenticator: Authenticator | None) -> None:
        self._credential = f"Bearer {service_token(secret_key)}".encode()
        self._internal = internal
        self._authenticator = authenticator

    async def admit(self, service: str, metadata: Metadata | None) -> Principal:
        """The call's principal, bound for the call; Unauthenticated when it may not be made."""
        if service in OPEN_SERVICES:
            principal = SERVICE
        elif service in self._internal or self._authenticator is None:
            presented = (_first(metadata, SERVICE_CREDENTIAL_METADATA) or "").encode()
            if not hmac.compare_digest(presented, self._credential):
                raise Unauthenticated(f"{service} is internal: it needs the service credential")
            principal = SERVICE
        else:
            principal = await self._authenticator.principal(_first(metadata, API_KEY_METADATA))
        bind_principal(principal)
        return principal


def main() -> None:
    """`python -m services.core.auth`: prints the service credential of this environment's
    SECRET_KEY, for an operator's grpcurl against an internal service (docs/security.md)."""

    class CredentialSettings(CoreSettings):
        REQUIRES_API_KEY = False

    sys.stdout.write(f"Bearer {service_token(load_settings(CredentialSettings).secret_key.get_secret_value())}\n")


if __name__ == "__main__":
    main()
