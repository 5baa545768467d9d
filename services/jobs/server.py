"""Wires the jobs service: database, servicer, gRPC server and its health."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from services.core import db, migrate
from services.core.auth import Authenticator, CallGuard, StoredUserKeys
from services.core.egress import Resolver, resolve
from services.core.grpc_server import ServiceBinding, start_grpc_app, watch_dependency
from services.core.runtime import DatabaseService
from services.core.storage import create_storage
from services.core.tasks import broker_redis_url, create_celery, depth_keys, depths_of
from services.jobs.apikeys import ApiKeys
from services.jobs.batching import CreateBatcher
from services.jobs.dispatcher import Dispatcher, DispatchPolicy
from services.jobs.domain import JobLimits
from services.jobs.lifecycle import JobLifecycleServicer
from services.jobs.live import LiveEvents
from services.jobs.publisher import JobPublisher
from services.jobs.quotas import Quota
from services.jobs.ratelimit import CreationLimiter, RateLimit
from services.jobs.retention import Retention, RetentionPolicy
from services.jobs.service import JobsService
from services.jobs.servicer import JobServicer, job_to_proto
from services.jobs.settings import JobsSettings
from services.jobs.webhook_setup import open_webhooks
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, lifecycle_pb2, lifecycle_pb2_grpc, providers_pb2

SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
LIFECYCLE_SERVICE = lifecycle_pb2.DESCRIPTOR.services_by_name["JobLifecycleService"]
SERVICE_NAME = SERVICE.full_name
# A running jobs service.
JobsServer = DatabaseService


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
    Redis, job creation is rate limited per user. Webhook hosts are resolved with resolver."""
    engine = db.create_engine(settings, database_url)
    limiter = client = None
    if redis_url is not None:
        client = aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        limit = RateLimit(per_minute=settings.jobs_rate_limit_per_minute, burst=settings.jobs_rate_limit_burst)
        limiter = CreationLimiter(client, limit, key_prefix=settings.celery_key_prefix)
    sessions = db.create_sessions(engine)
    publisher = dispatcher = None
    tasks: list[asyncio.Task[None]] = []
    if broker is not None:
        publisher = JobPublisher(
            create_celery(settings, broker=broker, name="videogen-jobs"),
            aioredis.Redis.from_url(broker_redis_url(broker), socket_timeout=2, socket_connect_timeout=2),
            key_prefix=settings.celery_key_prefix,
        )
        policy = DispatchPolicy(
            interval=settings.dispatch_interval,
            batch=settings.dispatch_batch,
            aging_seconds=settings.priority_aging_seconds,
            lease_seconds=settings.job_lease_seconds,
            orphan_after_seconds=settings.orphan_sweep_after_seconds,
        )
        watch = None if client is None else RedisBrokerWatch(client, settings)
        dispatcher = Dispatcher(sessions, publisher, policy, broker=watch)
    limits = JobLimits(
        default_max_retries=settings.jobs_default_max_retries,
        list_max_skip=settings.jobs_list_max_skip,
        metadata_max_bytes=settings.jobs_metadata_max_bytes,
    )
    storage = create_storage(settings.media_root, settings)
    webhooks = open_webhooks(settings, sessions, storage, resolver=resolver)
    if dispatcher is not None:
        dispatcher.webhooks = webhooks.outbox  # the reaper's requeues and failures are events too
    live = None
    if client is not None and redis_url is not None:
        live = LiveEvents.open(
            settings,
            client=client,
            redis_url=redis_url,
            sessions=sessions,
            to_proto=lambda job: job_to_proto(job, storage),
        )
        if dispatcher is not None:
            dispatcher.on_reaped = live.publisher.publish_ids
    quota = Quota(
        max_jobs_in_flight=settings.quota_max_jobs_in_flight,
        video_seconds_per_day=settings.quota_video_seconds_per_day,
    )
    reads = db.create_read_sessions(engine)
    service = JobsService(
        sessions,
        dispatcher,
        storage,
        limiter,
        changes=None if live is None else live.publisher,
        quota=quota,
        webhooks=webhooks.outbox,
        egress=webhooks.egress,
        reads=reads,
        batcher=CreateBatcher(sessions, claimed=dispatcher is not None),
    )
    servicer = JobServicer(
        service,
        limits,
        keys=ApiKeys(sessions),
        webhook_secrets=webhooks.secrets,
        storage=storage,
        deliveries=webhooks.desk,
        watch=None if live is None else live.hub,
    )
    bindings = [
        ServiceBinding(servicer, jobs_pb2_grpc.add_JobServiceServicer_to_server, SERVICE),
        ServiceBinding(
            JobLifecycleServicer(service),
            lifecycle_pb2_grpc.add_JobLifecycleServiceServicer_to_server,
            LIFECYCLE_SERVICE,
            internal=True,
        ),
    ]
    guard = CallGuard(
        secret_key=settings.secret_key.get_secret_value(),
        internal=frozenset({LIFECYCLE_SERVICE.full_name}),
        authenticator=Authenticator(
            admin_key=settings.api_key.get_secret_value(),
            user_keys=StoredUserKeys(reads),
            required=settings.app_env == "production",
        ),
    )
    if dispatcher is not None:
        # Before the first job is taken: whatever is queued now was published to a Redis that
        # may have lost it while this service was down.
        await dispatcher.check_broker(timeout=settings.health_check_interval)
    app = await start_grpc_app(
        bindings,
        address=address,
        max_message_bytes=settings.grpc_max_message_bytes,
        guard=guard,
        # Reflection through the edge is served here: it describes the whole public API.
        describe=[providers_pb2.DESCRIPTOR.services_by_name["ProviderService"]],
    )
    timeout = min(settings.db_connect_timeout, settings.health_check_interval * 2)
    tasks.append(
        asyncio.create_task(
            watch_dependency(
                app,
                migrate.SchemaGate(engine, timeout=timeout),
                interval=settings.health_check_interval,
                name="database",
            )
        )
    )
    if dispatcher is not None:
        tasks.append(asyncio.create_task(dispatcher.run()))
    tasks.append(asyncio.create_task(webhooks.sender.run(), name="webhook-sender"))
    if live is not None:
        tasks.append(live.start())
    if settings.media_retention_days > 0:
        retention = RetentionPolicy(
            days=settings.media_retention_days,
            interval=settings.media_retention_interval,
            batch=settings.media_retention_batch,
        )
        # Cancelled on stop: a sweep cut short rolls back and is done again later.
        tasks.append(asyncio.create_task(Retention(sessions, storage, retention).run()))
    return DatabaseService(
        app=app,
        engine=engine,
        tasks=tasks,
        before_stop=[
            webhooks.sender.stop,
            *([dispatcher.stop] if dispatcher is not None else []),
            *([live.stop] if live is not None else []),
        ],
        after_stop=[
            *([publisher.close] if publisher is not None else []),
            *([limiter.close] if limiter is not None else []),
            *([live.close] if live is not None else []),
        ],
    )


class RedisBrokerWatch:
    """The dispatcher's view of the Celery broker (the Redis of REDIS_URL)."""

    def __init__(self, client: aioredis.Redis, settings: JobsSettings) -> None:
        self._client = client
        self._settings = settings
        # Set once with NX: a Redis that restarted without its data no longer has it.
        self._epoch_key = f"{settings.celery_key_prefix}videogen:broker-epoch"

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each Celery queue (every priority list of it), in one round trip."""
        async with self._client.pipeline(transaction=False) as pipe:
            for key in depth_keys(self._settings):
                pipe.llen(key)
            return depths_of(self._settings, await pipe.execute())

    async def lost_its_data(self) -> bool:
        """True when the epoch key was missing (and is now set): a new or emptied Redis."""
        return bool(await self._client.set(self._epoch_key, uuid.uuid4().hex, nx=True))

    async def forget_epoch(self) -> None:
        """Deletes the epoch key, so that the next check reports a loss again."""
        await self._client.delete(self._epoch_key)
