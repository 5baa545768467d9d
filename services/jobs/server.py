"""Wires the jobs service: database, subsystems, use cases, servicers, gRPC server and its health."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.core import db
from services.core.egress import Resolver, resolve
from services.core.grpc_server import GrpcApp, ServiceBinding, start_grpc_app
from services.core.runtime import Background, DatabaseService, database_health
from services.core.storage import create_storage
from services.core.storage.base import MediaStorage
from services.core.stored_keys import keyed_guard
from services.jobs.apikeys import ApiKeys
from services.jobs.batching import CreateBatcher
from services.jobs.convert import job_to_proto
from services.jobs.cursors import ListCursors
from services.jobs.dispatch import Dispatch, open_dispatch
from services.jobs.domain import JobLimits
from services.jobs.hot import HotTransitions
from services.jobs.lifecycle import JobLifecycleServicer
from services.jobs.live import LiveEvents, open_live
from services.jobs.quotas import Quota
from services.jobs.ratelimit import CreationLimiter, RateLimit
from services.jobs.retention import open_retention
from services.jobs.service import JobsService
from services.jobs.servicer import JobServicer
from services.jobs.settings import JobsSettings
from services.jobs.webhooks import Webhooks, open_webhooks
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, lifecycle_pb2, lifecycle_pb2_grpc, providers_pb2

SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
LIFECYCLE_SERVICE = lifecycle_pb2.DESCRIPTOR.services_by_name["JobLifecycleService"]
SERVICE_NAME = SERVICE.full_name
# A running jobs service.
JobsServer = DatabaseService
Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Subsystems:
    """The parts of a jobs service beside its use cases; live and dispatch are optional."""

    webhooks: Webhooks
    live: LiveEvents | None
    dispatch: Dispatch | None
    limiter: CreationLimiter | None

    @property
    def background(self) -> list[Background]:
        """What they run, in the order their loops start and their hooks are called."""
        closer = Background(after_stop=(self.limiter.close,)) if self.limiter is not None else Background()
        optional = [part.background for part in (self.dispatch, self.live) if part is not None]
        return [*optional, self.webhooks.background, closer]


def open_subsystems(
    settings: JobsSettings,
    sessions: Sessions,
    storage: MediaStorage,
    *,
    broker: str | None,
    redis_url: str | None,
    resolver: Resolver,
) -> Subsystems:
    """Webhooks always; with Redis, live events and the creation rate limit; with a broker, dispatch."""
    webhooks = open_webhooks(settings, sessions, storage, resolver=resolver)
    if redis_url is None:
        client = live = None
    else:
        client = aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        to_proto = functools.partial(job_to_proto, storage=storage)  # the URL a client can use now
        live = open_live(settings, client=client, redis_url=redis_url, sessions=sessions, to_proto=to_proto)
    dispatch = None
    if broker is not None:
        on_reaped = None if live is None else live.publisher.publish_ids
        dispatch = open_dispatch(
            settings, sessions, broker=broker, watch_client=client, webhooks=webhooks.outbox, on_reaped=on_reaped
        )
    limiter = None if client is None else creation_limiter(settings, client)
    return Subsystems(webhooks=webhooks, live=live, dispatch=dispatch, limiter=limiter)


async def start_jobs_server(
    settings: JobsSettings,
    *,
    database_url: str,
    address: str,
    broker: str | None = None,
    redis_url: str | None = None,
    resolver: Resolver = resolve,
) -> JobsServer:
    """Starts JobService on address; it reports SERVING while the database answers.

    With a broker, new jobs are published on the Celery queues and the dispatcher runs. With
    Redis, job creation is rate limited per user and jobs can be watched live. Webhook hosts are
    resolved with resolver."""
    engine = db.create_engine(settings, database_url)
    sessions, reads = db.create_sessions(engine), db.create_read_sessions(engine)
    storage = create_storage(settings.media_root, settings)
    parts = open_subsystems(settings, sessions, storage, broker=broker, redis_url=redis_url, resolver=resolver)
    dispatcher = None if parts.dispatch is None else parts.dispatch.dispatcher
    hot = HotTransitions(engine)
    service = JobsService(
        sessions,
        dispatcher,
        storage,
        parts.limiter,
        changes=None if parts.live is None else parts.live.publisher,
        quota=Quota(
            max_jobs_in_flight=settings.quota_max_jobs_in_flight,
            video_seconds_per_day=settings.quota_video_seconds_per_day,
        ),
        webhooks=parts.webhooks.outbox,
        egress=parts.webhooks.egress,
        reads=reads,
        batcher=CreateBatcher(sessions, claimed=dispatcher is not None, hot=hot),
        hot=hot,
    )
    if dispatcher is not None:
        # Before the first job is taken: whatever is queued now was published to a Redis that
        # may have lost it while this service was down.
        await dispatcher.check_broker(timeout=settings.health_check_interval)
    app = await serve_jobs(settings, job_servicer(settings, service, parts, storage, sessions), service, address, reads)
    background = [
        database_health(settings, app, engine),
        *parts.background,
        open_retention(settings, sessions, storage),
    ]
    return DatabaseService.serving(app, engine, background)


def job_servicer(
    settings: JobsSettings, service: JobsService, parts: Subsystems, storage: MediaStorage, sessions: Sessions
) -> JobServicer:
    """JobService's servicer, with the JOBS_* limits."""
    limits = JobLimits(
        default_max_retries=settings.jobs_default_max_retries,
        list_max_skip=settings.jobs_list_max_skip,
        metadata_max_bytes=settings.jobs_metadata_max_bytes,
    )
    return JobServicer(
        service,
        limits,
        keys=ApiKeys(sessions),
        webhook_secrets=parts.webhooks.secrets,
        cursors=ListCursors.from_secret(settings.secret_key.get_secret_value()),
        storage=storage,
        deliveries=parts.webhooks.desk,
        watch=None if parts.live is None else parts.live.hub,
        stats_reads=sessions,
    )


def creation_limiter(settings: JobsSettings, client: aioredis.Redis) -> CreationLimiter:
    """JOBS_RATE_LIMIT_* per user, kept in Redis (its connections close with the limiter)."""
    limit = RateLimit(per_minute=settings.jobs_rate_limit_per_minute, burst=settings.jobs_rate_limit_burst)
    return CreationLimiter(client, limit, key_prefix=settings.celery_key_prefix)


async def serve_jobs(
    settings: JobsSettings, servicer: JobServicer, service: JobsService, address: str, reads: Sessions
) -> GrpcApp:
    """The gRPC server of JobService (for clients' keys) and JobLifecycleService (internal)."""
    bindings = [
        ServiceBinding(servicer, jobs_pb2_grpc.add_JobServiceServicer_to_server, SERVICE),
        ServiceBinding(
            JobLifecycleServicer(service.attempts),
            lifecycle_pb2_grpc.add_JobLifecycleServiceServicer_to_server,
            LIFECYCLE_SERVICE,
            internal=True,
        ),
    ]
    guard = keyed_guard(settings, internal=frozenset({LIFECYCLE_SERVICE.full_name}), user_keys=reads)
    return await start_grpc_app(
        bindings,
        address=address,
        max_message_bytes=settings.grpc_max_message_bytes,
        guard=guard,
        # Reflection through the edge is served here: it describes the whole public API.
        describe=[providers_pb2.DESCRIPTOR.services_by_name["ProviderService"]],
        outage=db.is_unavailable,
    )
