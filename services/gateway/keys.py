"""/api/v1/api-keys: per-user API keys, managed with the admin key (docs/security.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from services.core.job import rules
from services.gateway.bodies import StrictJsonRoute
from services.gateway.deps import BackendsDep, call
from services.gateway.schemas import Problem, Skip, Take, UserIdQuery
from videogen.v1 import keys_pb2

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"], route_class=StrictJsonRoute)
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No X-API-Key, or one that is not valid"},
    403: {"model": Problem, "description": "Only the admin key (API_KEY) manages keys"},
}
_ERRORS: dict[int | str, dict[str, Any]] = {**AUTH_ERRORS, 422: {"model": Problem}, 503: {"model": Problem}}
_KEY_EXAMPLE: dict[str, Any] = {
    "id": "cmwwxjd0a3nooz87bq4t5u6v7",
    "userId": "user-123",
    "name": "mobile app",
    "prefix": "vgk_Ab3d",
    "createdAt": "2026-12-02T10:00:00+00:00",
}


class ApiKeyCreate(BaseModel):
    """A key to make: the user it acts for, and a name for people."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"userId": "user-123", "name": "mobile app"}]}
    )

    userId: Annotated[str, Field(pattern=rules.USER_ID.pattern, description="1-128 characters of [A-Za-z0-9_.:@-]")]
    name: Annotated[str, Field(min_length=1, max_length=128, description="1-128 printable characters")]


class ApiKey(BaseModel):
    """A key as lists show it: never the secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [_KEY_EXAMPLE]})

    id: str
    userId: str
    name: str
    prefix: str = Field(description="The key's first characters, to tell keys apart")
    createdAt: datetime


class IssuedApiKey(ApiKey):
    """A key just made: the only answer that ever holds its secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**_KEY_EXAMPLE, "key": "vgk_Ab3d…(47 characters)"}]})

    key: str = Field(description="Send it as X-API-Key. Shown once: store it now")


class ApiKeyList(BaseModel):
    """One page of keys, newest first."""

    apiKeys: list[ApiKey]
    total: int
    skip: int
    take: int


def _key(message: keys_pb2.ApiKey) -> dict[str, Any]:
    return {
        "id": message.id,
        "userId": message.user_id,
        "name": message.name,
        "prefix": message.prefix,
        "createdAt": message.created_at.ToDatetime(tzinfo=UTC),
    }


@router.post("", status_code=201, response_model=IssuedApiKey, responses=_ERRORS, summary="Create a per-user API key")
async def create_key(body: ApiKeyCreate, backends: BackendsDep) -> IssuedApiKey:
    """A key that acts for `userId`: its creates default to that user, it sees only that user's
    jobs, and it cannot reach the admin routes. The `key` is in this answer and nowhere else."""
    request = keys_pb2.CreateApiKeyRequest(user_id=body.userId, name=body.name)
    reply = await call(backends.jobs.CreateApiKey, request, backends=backends, service="jobs")
    return IssuedApiKey(**_key(reply), key=reply.key)


@router.get("", response_model=ApiKeyList, responses=_ERRORS, summary="List API keys")
async def list_keys(
    backends: BackendsDep,
    userId: UserIdQuery = None,  # noqa: N803 - the contract's name
    skip: Skip = 0,
    take: Take = rules.TAKE_DEFAULT,
) -> ApiKeyList:
    """Keys newest first (only `userId`'s when given), without their secrets."""
    request = keys_pb2.ListApiKeysRequest(skip=skip, take=take)
    if userId is not None:
        request.user_id = userId
    reply = await call(backends.jobs.ListApiKeys, request, backends=backends, service="jobs")
    keys = [ApiKey(**_key(key)) for key in reply.api_keys]
    return ApiKeyList(apiKeys=keys, total=reply.total, skip=reply.skip, take=reply.take)


@router.delete(
    "/{key_id}",
    status_code=204,
    response_class=Response,
    responses={**_ERRORS, 204: {"description": "Deleted: it stops working within 5 seconds"}, 404: {"model": Problem}},
    summary="Delete an API key",
)
async def delete_key(key_id: str, backends: BackendsDep) -> Response:
    """The key stops working within 5 seconds on every replica."""
    await call(backends.jobs.DeleteApiKey, keys_pb2.DeleteApiKeyRequest(id=key_id), backends=backends, service="jobs")
    return Response(status_code=204)
