"""JobService over gRPC: protobuf in, domain calls, protobuf out; nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import tracing
from services.core.auth import acting_user, owner_scope, require_admin
from services.core.errors import PermissionDenied, Unavailable
from services.core.job.status import STATUS_FROM_PROTO
from services.core.logging import current_request_id
from services.core.models import Job
from services.core.protocol import REPLAYED_HEADER
from services.core.storage.base import MediaStorage
from services.jobs import domain, key_rpcs
from services.jobs.apikeys import ApiKeys
from services.jobs.convert import attempt_to_proto, enum_filter, job_to_proto
from services.jobs.cursors import ListCursors
from services.jobs.domain import JobLimits
from services.jobs.live.watch import WatchHub, watch_job
from services.jobs.queue_stats import queue_stats
from services.jobs.service import JobsService
from services.jobs.webhooks import rpcs as webhook_rpcs
from services.jobs.webhooks.outbox import DeliveryDesk
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, keys_pb2, queues_pb2, webhooks_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    """Translates JobService calls into JobsService use cases, within what the caller's key may
    see (services/core/auth.py: a user key acts for its user only)."""

    def __init__(
        self,
        service: JobsService,
        limits: JobLimits,
        *,
        keys: ApiKeys,
        webhook_secrets: Sequence[str],
        cursors: ListCursors,
        stats_reads: async_sessionmaker[AsyncSession],
        storage: MediaStorage | None = None,
        watch: WatchHub | None = None,
        deliveries: DeliveryDesk | None = None,
    ) -> None:
        self._stats_reads = stats_reads
        self._deliveries = deliveries
        self._service = service
        self._limits = limits
        self._keys = keys
        self._cursors = cursors
        self._webhook_secrets = tuple(webhook_secrets)
        self._watch = watch
        self._storage = storage

    def _to_proto(self, job: Job) -> jobs_pb2.Job:
        return job_to_proto(job, self._storage)

    async def CreateJob(self, request: jobs_pb2.CreateJobRequest, context: Context) -> jobs_pb2.Job:
        new = domain.validate_new_job(
            user_id=acting_user(request.user_id),
            prompt=request.prompt,
            metadata_json=request.metadata_json,
            max_retries=request.max_retries if request.HasField("max_retries") else None,
            limits=self._limits,
            idempotency_key=request.idempotency_key,
            webhook_url=request.webhook_url if request.HasField("webhook_url") else None,
            webhook_events=list(request.webhook_events),
            traceparent=tracing.current_traceparent(),
        )
        created = await self._service.create_job(new, request_id=current_request_id())
        if created.replayed:
            await context.send_initial_metadata(((REPLAYED_HEADER, "true"),))
        return self._to_proto(created.job)

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        return self._to_proto(await self._service.get_job(job_id, owner=owner_scope()))

    async def ListJobAttempts(
        self, request: jobs_pb2.ListJobAttemptsRequest, context: Context
    ) -> jobs_pb2.ListJobAttemptsResponse:
        job_id = domain.checked_job_id(request.id)
        owner = owner_scope()
        attempts = await self._service.job_attempts(job_id, owner=owner)
        return jobs_pb2.ListJobAttemptsResponse(
            attempts=[attempt_to_proto(attempt, with_worker=owner is None) for attempt in attempts]
        )

    async def ListJobs(self, request: jobs_pb2.ListJobsRequest, context: Context) -> jobs_pb2.ListJobsResponse:
        query = self._list_filter(request)
        page = await self._service.list_jobs(query)
        reply = jobs_pb2.ListJobsResponse(
            jobs=[self._to_proto(job) for job in page.jobs], total=page.total, skip=query.skip, take=query.take
        )
        if (last := page.last) is not None:
            reply.next_cursor = self._cursors.make(last, user_id=query.user_id, status=query.status)
        return reply

    def _list_filter(self, request: jobs_pb2.ListJobsRequest) -> domain.JobFilter:
        """The request's filter within what the caller's key may see, its cursor read for it."""
        user_id = request.user_id if request.HasField("user_id") else None
        owner = owner_scope()
        if owner is not None:
            if user_id is not None and user_id != owner:
                raise PermissionDenied(f"user_id: this key lists its own user's jobs, not {user_id!r}'s")
            user_id = owner
        query = domain.validate_filter(
            user_id=user_id,
            status=enum_filter(request.status, STATUS_FROM_PROTO, field="status", noun="status"),
            skip=request.skip,
            take=request.take if request.HasField("take") else None,
            limits=self._limits,
        )
        if not request.HasField("cursor"):
            return query
        after = self._cursors.read(request.cursor, user_id=query.user_id, status=query.status)
        return domain.continue_after(query, after)

    async def CancelJob(self, request: jobs_pb2.CancelJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        return self._to_proto(await self._service.cancel_job(job_id, owner=owner_scope()))

    async def DeleteJob(self, request: jobs_pb2.DeleteJobRequest, context: Context) -> jobs_pb2.Job:
        job_id = domain.checked_job_id(request.id)
        return self._to_proto(await self._service.delete_job(job_id, owner=owner_scope()))

    async def WatchJob(self, request: jobs_pb2.WatchJobRequest, context: Context) -> AsyncIterator[jobs_pb2.JobEvent]:
        job_id = domain.checked_job_id(request.id)
        after = (
            domain.non_negative(request.after_event_id, "after_event_id") if request.HasField("after_event_id") else 0
        )
        if self._watch is None:
            raise Unavailable("live events need Redis (REDIS_URL); this jobs service runs without it")
        owner = owner_scope()

        async def read(job_id: str) -> jobs_pb2.Job:
            """One job as GetJob answers it to this caller."""
            return self._to_proto(await self._service.get_job(job_id, owner=owner))

        async for event in watch_job(self._watch, job_id, after=after, read=read):
            yield event

    async def ListJobDeliveries(
        self, request: webhooks_pb2.ListJobDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ListDeliveriesResponse:
        return await webhook_rpcs.list_job_deliveries(self._desk(), request, self._limits, owner=owner_scope())

    async def ListDeliveries(
        self, request: webhooks_pb2.ListDeliveriesRequest, context: Context
    ) -> webhooks_pb2.ListDeliveriesResponse:
        require_admin("listing every job's deliveries")
        return await webhook_rpcs.list_deliveries(self._desk(), request, self._limits)

    async def Redeliver(self, request: webhooks_pb2.RedeliverRequest, context: Context) -> webhooks_pb2.WebhookDelivery:
        require_admin("redelivering")
        return await webhook_rpcs.redeliver(self._desk(), request)

    async def GetWebhookSecret(
        self, request: webhooks_pb2.GetWebhookSecretRequest, context: Context
    ) -> webhooks_pb2.WebhookSecret:
        require_admin("reading the webhook secret")
        return webhooks_pb2.WebhookSecret(key=self._webhook_secrets[0], keys=self._webhook_secrets)

    async def CreateApiKey(self, request: keys_pb2.CreateApiKeyRequest, context: Context) -> keys_pb2.ApiKey:
        require_admin("managing API keys")
        return await key_rpcs.create(self._keys, request)

    async def ListApiKeys(self, request: keys_pb2.ListApiKeysRequest, context: Context) -> keys_pb2.ListApiKeysResponse:
        require_admin("managing API keys")
        return await key_rpcs.list_keys(self._keys, request, self._limits)

    async def DeleteApiKey(self, request: keys_pb2.DeleteApiKeyRequest, context: Context) -> keys_pb2.ApiKey:
        require_admin("managing API keys")
        return await key_rpcs.delete(self._keys, request)

    async def GetQueueStats(self, request: queues_pb2.GetQueueStatsRequest, context: Context) -> queues_pb2.QueueStats:
        require_admin("reading the queues")
        return await queue_stats(self._stats_reads)

    def _desk(self) -> DeliveryDesk:
        if self._deliveries is None:
            raise Unavailable("webhook deliveries are not served by this jobs service")
        return self._deliveries
