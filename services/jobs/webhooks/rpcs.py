"""The webhook RPCs of JobService: protobuf in, DeliveryDesk calls, protobuf out."""

from __future__ import annotations

import json
from collections.abc import Sequence

from services.core.models import DELIVERY_STATES, WebhookDelivery
from services.jobs import domain
from services.jobs.convert import enum_filter, timestamp
from services.jobs.domain import JobLimits, validate_page
from services.jobs.webhooks.outbox import DeliveryDesk, checked_delivery_id
from videogen.v1 import webhooks_pb2

_STATE_TO_PROTO = {
    state: webhooks_pb2.DeliveryState.Value(f"DELIVERY_STATE_{state.upper()}") for state in DELIVERY_STATES
}
_STATE_FROM_PROTO: dict[int, str] = {number: state for state, number in _STATE_TO_PROTO.items()}


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
        next_attempt_at=timestamp(delivery.next_attempt_at),
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=timestamp(delivery.created_at),
        delivered_at=timestamp(delivery.delivered_at),
        payload_json=json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False),
    )


def _page(found: Sequence[WebhookDelivery], total: int, skip: int, take: int) -> webhooks_pb2.ListDeliveriesResponse:
    return webhooks_pb2.ListDeliveriesResponse(
        deliveries=[delivery_to_proto(delivery) for delivery in found], total=total, skip=skip, take=take
    )


async def list_job_deliveries(
    desk: DeliveryDesk, request: webhooks_pb2.ListJobDeliveriesRequest, limits: JobLimits, *, owner: str | None
) -> webhooks_pb2.ListDeliveriesResponse:
    """ListJobDeliveries: one job's deliveries, oldest first (only of the owner's jobs, when set)."""
    job_id = domain.checked_job_id(request.job_id)
    page = validate_page(
        request.skip, request.take if request.HasField("take") else None, max_skip=limits.list_max_skip
    )
    found, total = await desk.for_job(job_id, page, owner=owner)
    return _page(found, total, page.skip, page.take)


async def list_deliveries(
    desk: DeliveryDesk, request: webhooks_pb2.ListDeliveriesRequest, limits: JobLimits
) -> webhooks_pb2.ListDeliveriesResponse:
    """ListDeliveries: every job's deliveries by state, newest first."""
    state = enum_filter(request.state, _STATE_FROM_PROTO, field="state", noun="state")
    page = validate_page(
        request.skip, request.take if request.HasField("take") else None, max_skip=limits.list_max_skip
    )
    found, total = await desk.by_state(state, page)
    return _page(found, total, page.skip, page.take)


async def redeliver(desk: DeliveryDesk, request: webhooks_pb2.RedeliverRequest) -> webhooks_pb2.WebhookDelivery:
    """Redeliver: a delivery back to pending, due now."""
    return delivery_to_proto(await desk.redeliver(checked_delivery_id(request.id)))
