"""Webhook deliveries: written in the transaction of the status change they report, listed and
redelivered by clients and operators. The sender (services/jobs/webhooks/sender.py) POSTs them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from services.core.ids import CUID_PATTERN
from services.core.logging import get_logger
from services.core.models import DELIVERY_STATES, Job, WebhookDelivery
from services.jobs import repository
from services.jobs.domain import JobNotFound, Page
from services.jobs.webhooks import deliveries

log = get_logger(__name__)
# The job's JSON as the REST API answers it (the body of every delivery of the event).
JobRenderer = Callable[[Job], dict[str, Any]]
_WAKE_HOOKED = "webhook_outbox_wake_hooked"


class DeliveryNotFound(NotFound):
    """No delivery has this id."""

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"delivery {delivery_id!r} not found")


class DeliveryInFlight(FailedPrecondition):
    """The delivery is being attempted right now."""

    def __init__(self, delivery_id: str) -> None:
        super().__init__(f"cannot redeliver {delivery_id!r}: an attempt is in flight")


class WebhookOutbox:
    """Adds deliveries inside the caller's transaction and wakes the sender once it commits."""

    def __init__(self, render: JobRenderer) -> None:
        self._render = render
        # Set after a commit that added a delivery (and by a redeliver); the sender waits on it.
        self.added = asyncio.Event()

    async def record(self, session: AsyncSession, job: Job, event_type: str) -> None:
        """Adds a delivery of event_type when the job has a webhook whose filter lets it pass."""
        # The same filter, in SQL, keeps such a change off the hot path (services/jobs/hot.py's
        # _no_delivery_of): a change to one is a change to both.
        if job.webhook_url is None or (job.webhook_events and event_type not in job.webhook_events):
            return
        await deliveries.insert_delivery(session, job, event=event_type, payload=self._render(job))
        self._wake_after_commit(session)

    async def record_many(self, session: AsyncSession, events: Iterable[tuple[str, str]]) -> None:
        """Adds the deliveries of (job id, event type) pairs, for changes made in bulk (the reaper)."""
        by_id = dict(events)
        if not by_id:
            return
        jobs = await session.scalars(select(Job).where(Job.id.in_(by_id), Job.webhook_url.is_not(None)))
        for job in jobs:
            await self.record(session, job, by_id[job.id])

    def _wake_after_commit(self, session: AsyncSession) -> None:
        sync = session.sync_session
        if not sync.info.get(_WAKE_HOOKED):
            sync.info[_WAKE_HOOKED] = True
            event.listen(sync, "after_commit", lambda _session: self.added.set(), once=True)


def validate_state(value: str | None) -> str | None:
    """None for any state, else one of pending, delivering, delivered, dead."""
    if value is not None and value not in DELIVERY_STATES:
        raise InvalidArgument("state", f"must be one of {', '.join(DELIVERY_STATES)}")
    return value


def checked_delivery_id(value: str) -> str:
    """The id, or DeliveryNotFound at once when it cannot be a delivery's id."""
    if not CUID_PATTERN.fullmatch(value):
        raise DeliveryNotFound(value[:64])
    return value


class DeliveryDesk:
    """What clients and operators do with deliveries: list them, redeliver one."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], outbox: WebhookOutbox) -> None:
        self._sessions = sessions
        self._outbox = outbox

    async def for_job(
        self, job_id: str, page: Page, *, owner: str | None = None
    ) -> tuple[Sequence[WebhookDelivery], int]:
        """A job's deliveries, oldest first; JobNotFound for an unknown job (or, with owner, one of
        another user)."""
        async with self._sessions.begin() as session:
            if owner is not None:
                job = await repository.get_job(session, job_id)
                if job is None or job.user_id != owner:
                    raise JobNotFound(job_id)
            found, total = await deliveries.list_for_job(session, job_id, skip=page.skip, take=page.take)
            if not total and owner is None and await repository.get_job(session, job_id) is None:
                raise JobNotFound(job_id)
        return found, total

    async def by_state(self, state: str | None, page: Page) -> tuple[Sequence[WebhookDelivery], int]:
        """Every job's deliveries in state (any when None), newest first."""
        async with self._sessions.begin() as session:
            return await deliveries.list_by_state(session, state, skip=page.skip, take=page.take)

    async def redeliver(self, delivery_id: str) -> WebhookDelivery:
        """Takes a delivery back to pending, due now, with a fresh retry window; same event id."""
        async with self._sessions.begin() as session:
            delivery = await deliveries.reschedule(session, delivery_id)
            if delivery is None:
                if await deliveries.get_delivery(session, delivery_id) is None:
                    raise DeliveryNotFound(delivery_id)
                raise DeliveryInFlight(delivery_id)
        self._outbox.added.set()
        log.info("webhook.redelivery_scheduled", delivery_id=delivery_id, event_id=delivery.event_id)
        return delivery
