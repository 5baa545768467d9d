"""/api/v1 webhook deliveries: one job's, the dead letters, and redelivering one (docs/webhooks.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field

from services.core.job import rules
from services.gateway.bodies import StrictJsonRoute
from services.gateway.deps import BackendsDep, call
from services.gateway.keys import AUTH_ERRORS
from services.gateway.schemas import Problem, Skip, Take
from videogen.v1 import webhooks_pb2

router = APIRouter(tags=["webhooks"], route_class=StrictJsonRoute)
_EVENT_ID = "evt_cmwwxjd0a3nooz87b4r1c2d3e"
DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": "cmwwxjd0a3nooz87bq4t5u6v7",
    "jobId": "cmwwxjck83noow87bhzi07al8",
    "eventId": _EVENT_ID,
    "eventType": "job.completed",
    "url": "https://example.com/hooks/videogen",
    "state": "dead",
    "attempts": 17,
    "nextAttemptAt": "2026-11-27T10:00:05+00:00",
    "lastStatusCode": 503,
    "lastError": "status 503",
    "createdAt": "2026-11-26T10:00:01.300000+00:00",
    "deliveredAt": None,
    "payload": {"id": "cmwwxjck83noow87bhzi07al8", "status": "completed", "...": "the job's JSON"},
}


class DeliveryState(StrEnum):
    """Where a delivery is: pending -> delivering -> delivered, or dead after the retry window."""

    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    DEAD = "dead"


class WebhookDelivery(BaseModel):
    """One event POSTed (or to be POSTed) to a job's webhook."""

    model_config = ConfigDict(json_schema_extra={"examples": [DELIVERY_EXAMPLE]})

    id: str
    jobId: str
    eventId: str
    eventType: str
    url: str
    state: DeliveryState
    attempts: int
    nextAttemptAt: datetime
    lastStatusCode: int | None
    lastError: str | None
    createdAt: datetime
    deliveredAt: datetime | None
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    """One page of deliveries."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"deliveries": [DELIVERY_EXAMPLE], "total": 1, "skip": 0, "take": 20}]}
    )

    deliveries: list[WebhookDelivery]
    total: int
    skip: int
    take: int


def _time(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def delivery_from_proto(delivery: webhooks_pb2.WebhookDelivery) -> WebhookDelivery:
    """The REST form of a delivery."""
    return WebhookDelivery(
        id=delivery.id,
        jobId=delivery.job_id,
        eventId=delivery.event_id,
        eventType=delivery.event_type,
        url=delivery.url,
        state=DeliveryState(webhooks_pb2.DeliveryState.Name(delivery.state).removeprefix("DELIVERY_STATE_").lower()),
        attempts=delivery.attempts,
        nextAttemptAt=_time(delivery.next_attempt_at),
        lastStatusCode=delivery.last_status_code if delivery.HasField("last_status_code") else None,
        lastError=delivery.last_error if delivery.HasField("last_error") else None,
        createdAt=_time(delivery.created_at),
        deliveredAt=_time(delivery.delivered_at) if delivery.HasField("delivered_at") else None,
        payload=json.loads(delivery.payload_json or "{}"),
    )


def _list(reply: webhooks_pb2.ListDeliveriesResponse) -> DeliveryList:
    return DeliveryList(
        deliveries=[delivery_from_proto(d) for d in reply.deliveries],
        total=reply.total,
        skip=reply.skip,
        take=reply.take,
    )


_STATE = {state: webhooks_pb2.DeliveryState.Value(f"DELIVERY_STATE_{state.name}") for state in DeliveryState}
_ERRORS: dict[int | str, dict[str, Any]] = {404: {"model": Problem}, 422: {"model": Problem}, 503: {"model": Problem}}


@router.get(
    "/api/v1/jobs/{job_id}/webhooks",
    response_model=DeliveryList,
    responses=_ERRORS,
    summary="The webhook deliveries of one job",
)
async def list_job_deliveries(
    job_id: str, backends: BackendsDep, skip: Skip = 0, take: Take = rules.TAKE_DEFAULT
) -> DeliveryList:
    """Every event of the job sent (or to be sent) to its `webhookUrl`, oldest first, with its state,
    attempts and the receiver's last answer; 404 for an unknown job."""
    request = webhooks_pb2.ListJobDeliveriesRequest(job_id=job_id, skip=skip, take=take)
    return _list(await call(backends.jobs.ListJobDeliveries, request, backends=backends, service="jobs"))


@router.get(
    "/api/v1/webhooks/deliveries",
    response_model=DeliveryList,
    responses=_ERRORS,
    summary="Webhook deliveries of every job, by state (the dead letters with state=dead)",
)
async def list_deliveries(
    backends: BackendsDep, state: DeliveryState | None = None, skip: Skip = 0, take: Take = rules.TAKE_DEFAULT
) -> DeliveryList:
    """For operators: deliveries newest first; `state=dead` lists those whose retries ran out."""
    request = webhooks_pb2.ListDeliveriesRequest(skip=skip, take=take)
    if state is not None:
        request.state = _STATE[state]
    return _list(await call(backends.jobs.ListDeliveries, request, backends=backends, service="jobs"))


class WebhookSecret(BaseModel):
    """The Standard Webhooks secrets that sign deliveries."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"key": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "keys": ["whsec_MfKQ…"]}]}
    )

    key: str = Field(description="The current secret: verify deliveries with it (`standardwebhooks.Webhook(key)`)")
    keys: list[str] = Field(description="Every secret that signs now, the current first (two during a rotation)")


@router.get(
    "/api/v1/webhooks/secret",
    response_model=WebhookSecret,
    responses={**AUTH_ERRORS, 503: {"model": Problem}},
    summary="The secret that signs webhook deliveries (admin)",
)
async def webhook_secret(backends: BackendsDep) -> WebhookSecret:
    """Give it to your receivers so that they can verify each delivery (docs/webhooks.md). Derived from
    SECRET_KEY unless WEBHOOK_SECRET is set."""
    reply = await call(
        backends.jobs.GetWebhookSecret, webhooks_pb2.GetWebhookSecretRequest(), backends=backends, service="jobs"
    )
    return WebhookSecret(key=reply.key, keys=list(reply.keys))


@router.post(
    "/api/v1/webhooks/deliveries/{delivery_id}/redeliver",
    response_model=WebhookDelivery,
    responses={**_ERRORS, 409: {"model": Problem, "description": "An attempt of the delivery is in flight"}},
    summary="Send a delivery again",
)
async def redeliver(delivery_id: str, backends: BackendsDep) -> WebhookDelivery:
    """Takes a dead (or delivered, or pending) delivery back to `pending`, due now, with its attempts
    and retry window reset; it keeps its event id, so receivers can tell a duplicate."""
    request = webhooks_pb2.RedeliverRequest(id=delivery_id)
    return delivery_from_proto(await call(backends.jobs.Redeliver, request, backends=backends, service="jobs"))
