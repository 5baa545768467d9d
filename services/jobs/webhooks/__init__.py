"""Wires webhooks into the jobs service: the outbox the use cases write to, the desk the RPCs
read from, the sender that POSTs, and the egress rules both creation and the sender apply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import webhooks
from services.core.egress import Egress, Resolver, resolve
from services.core.errors import Unavailable
from services.core.job.public import job_from_proto
from services.core.models import Job
from services.core.runtime import Background
from services.core.storage.base import MediaStorage
from services.jobs.convert import job_to_proto
from services.jobs.settings import JobsSettings
from services.jobs.webhooks.hosts import GateRules
from services.jobs.webhooks.outbox import DeliveryDesk, WebhookOutbox
from services.jobs.webhooks.sender import DeliveryPolicy, WebhookSender


@dataclass(frozen=True)
class Webhooks:
    """The parts of webhook delivery in one jobs service."""

    outbox: WebhookOutbox
    desk: DeliveryDesk
    sender: WebhookSender
    # Where webhooks may go (WEBHOOK_ALLOW_PRIVATE_TARGETS): checked at creation and every attempt.
    egress: Egress
    # The Standard Webhooks secrets (whsec_...) that sign deliveries, current first.
    secrets: tuple[str, ...]

    @property
    def background(self) -> Background:
        """The sender's loop, asked to end before the drain."""
        return Background(loops=(("webhook-sender", self.sender.run),), before_stop=(self.sender.stop,))


def job_json(job: Job, storage: MediaStorage | None = None) -> dict[str, Any]:
    """The job's JSON exactly as the REST API answers it (with storage, its video URL as the API
    gives it out, presigned for S3): the body of its webhook deliveries."""
    try:
        message = job_to_proto(job, storage)
    except Unavailable:
        # A URL that cannot be signed now must not hold up the job's change: the stored one goes.
        message = job_to_proto(job)
    return job_from_proto(message).model_dump(mode="json")


def open_webhooks(
    settings: JobsSettings,
    sessions: async_sessionmaker[AsyncSession],
    storage: MediaStorage | None = None,
    *,
    resolver: Resolver = resolve,
) -> Webhooks:
    """The outbox, desk and sender, with the WEBHOOK_* settings (the sender runs in background)."""
    outbox = WebhookOutbox(render=lambda job: job_json(job, storage))
    policy = DeliveryPolicy(
        keys=tuple(webhooks.signing_keys(settings)),
        timeout=settings.webhook_timeout_seconds,
        retry_base=settings.webhook_retry_base_seconds,
        retry_max=settings.webhook_retry_max_seconds,
        retry_for_hours=settings.webhook_retry_for_hours,
        concurrency=settings.webhook_concurrency,
        poll_interval=settings.webhook_poll_interval,
        hosts=GateRules(
            max_per_host=settings.webhook_max_per_host,
            failures_to_open=settings.webhook_circuit_failures,
            cooldown=settings.webhook_circuit_cooldown_seconds,
        ),
    )
    egress = Egress(allow_private=settings.webhook_allow_private_targets, resolver=resolver)
    return Webhooks(
        outbox=outbox,
        desk=DeliveryDesk(sessions, outbox),
        sender=WebhookSender(sessions, outbox, policy, egress),
        egress=egress,
        secrets=tuple(webhooks.signing_secrets(settings)),
    )
