"""The webhook RPCs of JobService: protobuf in, DeliveryDesk calls, protobuf out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.core.errors import InvalidArgument
from services.core.models import DELIVERY_STATES, WebhookDelivery
from services.jobs import domain
from services.jobs.domain import JobLimits
from services.jobs.outbox import DeliveryDesk, checked_delivery_id, validate_page
from videogen.v1 import webhooks_pb2

_STATE_TO_PROTO = {
    state: webhooks_pb2.DeliveryState.Value(f"DELIVERY_STATE_{state.upper()}") for state in DELIVERY_STATES
}
_STATE_FROM_PROTO = {number: state for state, number in _STATE_TO_PROTO.items()}


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def delivery_to_proto(delivery: WebhookDelivery) -> webhooks_pb2.WebhookDelivery:
    """The protobuf form of a stored delivery."""
    return webhooks_pb2.WebhookDelivery(
        id=delivery.id,
        job_id=delivery.job_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        url=delivery.url,
        state=_STATE_TO_PROTO[delivery.state],
        attempts=delivery.attempts,
        next_attempt_at=_timestamp(delivery.next_attempt_at),
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=_timestamp(delivery.created_at),
        delivered_at=_timestamp(delivery.delivered_at),
        payload_json=json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False),
    )


def _page(found: Sequence[WebhookDelivery], total: int, skip: int, take: int) -> webhooks_pb2.ListDeliveriesResponse:
    return webhooks_pb2.ListDeliveriesResponse(
        deliveries=[delivery_to_proto(delivery) for delivery in found], total=total, skip=skip, take=take
    )


def _state_filter(number: int) -> str | None:
    if number == webhooks_pb2.DELIVERY_STATE_UNSPECIFIED:
        return None
    state = _STATE_FROM_PROTO.get(webhooks_pb2.DeliveryState.ValueType(number))
    if state is None:
        raise InvalidArgument("state", f"unknown state {number}")
    return state


async def list_job_deliveries(
    desk: DeliveryDesk, request: webhooks_pb2.ListJobDeliveriesRequest, limits: JobLimits
) -> webhooks_pb2.ListDeliveriesResponse:
    """ListJobDeliveries: one job's deliveries, oldest first."""
    job_id = domain.checked_job_id(request.job_id)
    page = validate_page(
        request.skip, request.take if request.HasField("take") else None, max_skip=limits.list_max_skip
    )
    found, total = await desk.for_job(job_id, page)
    return _page(found, total, page.skip, page.take)


async def list_deliveries(
    desk: DeliveryDesk, request: webhooks_pb2.ListDeliveriesRequest, limits: JobLimits
) -> webhooks_pb2.ListDeliveriesResponse:
    """ListDeliveries: every job's deliveries by state, newest first."""
    state = _state_filter(request.state)
    page = validate_page(
        request.skip, request.take if request.HasField("take") else None, max_skip=limits.list_max_skip
    )
    found, total = await desk.by_state(state, page)
    return _page(found, total, page.skip, page.take)


async def redeliver(desk: DeliveryDesk, request: webhooks_pb2.RedeliverRequest) -> webhooks_pb2.WebhookDelivery:
    """Redeliver: a delivery back to pending, due now."""
    return delivery_to_proto(await desk.redeliver(checked_delivery_id(request.id)))
