"""The API key RPCs of JobService: protobuf in, ApiKeys calls, protobuf out (admin only: the
servicer checks that before it calls here)."""

from __future__ import annotations

from services.core.job.rules import validate_label, validate_user_id
from services.core.models import ApiKey
from services.jobs.apikeys import ApiKeys, checked_key_id
from services.jobs.convert import timestamp
from services.jobs.domain import JobLimits, validate_page
from videogen.v1 import keys_pb2


def key_to_proto(row: ApiKey, *, key: str | None = None) -> keys_pb2.ApiKey:
    """The protobuf form of a stored key; the secret only when given (at creation)."""
    return keys_pb2.ApiKey(
        id=row.id, user_id=row.user_id, name=row.name, key=key, created_at=timestamp(row.created_at), prefix=row.prefix
    )


async def create(keys: ApiKeys, request: keys_pb2.CreateApiKeyRequest) -> keys_pb2.ApiKey:
    """CreateApiKey: a key for a user, named for people."""
    user_id = validate_user_id(request.user_id)
    name = validate_label(request.name, field="name", max_chars=128)
    issued = await keys.create(user_id=user_id, name=name)
    return key_to_proto(issued.row, key=issued.key)


async def list_keys(
    keys: ApiKeys, request: keys_pb2.ListApiKeysRequest, limits: JobLimits
) -> keys_pb2.ListApiKeysResponse:
    """ListApiKeys: newest first, without secrets."""
    user_id = validate_user_id(request.user_id) if request.HasField("user_id") else None
    page = validate_page(
        request.skip, request.take if request.HasField("take") else None, max_skip=limits.list_max_skip
    )
    rows, total = await keys.list(user_id, page)
    return keys_pb2.ListApiKeysResponse(
        api_keys=[key_to_proto(row) for row in rows], total=total, skip=page.skip, take=page.take
    )


async def delete(keys: ApiKeys, request: keys_pb2.DeleteApiKeyRequest) -> keys_pb2.ApiKey:
    """DeleteApiKey: the key as it was."""
    return key_to_proto(await keys.delete(checked_key_id(request.id)))
