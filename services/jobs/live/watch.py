"""WatchJob: one Redis subscription per process, shared by every local watcher of a job.

The hub holds one pub/sub connection. The first watcher of a job subscribes its channel on it,
later ones share that subscription; channels nobody watches any more are dropped on the next
tick. Each watcher subscribes before it reads the job, so no change can fall between the read
and the first message. After a lost connection, and every resync interval, the hub reads the
watched jobs in one query and hands them out, which makes good any message Redis lost; watchers
skip what is not newer than what they sent (event ids are the jobs' versions).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from prometheus_client import Gauge
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from services.core.errors import ResourceExhausted, Unavailable
from services.core.job.status import FINAL_PROTO
from services.core.logging import get_logger
from services.jobs.live.events import KEEPALIVE, channel_of, event_type
from videogen.v1 import jobs_pb2

log = get_logger(__name__)
# A watcher that falls this far behind loses its oldest states (each event is the whole job).
QUEUE_SIZE = 64
# How long a new watcher waits for Redis to confirm its subscription.
SUBSCRIBE_TIMEOUT = 5.0
_CLOSED = jobs_pb2.Job()  # put in every queue when the hub stops
WATCHERS = Gauge("job_watchers", "WatchJob streams (SSE included) this jobs process serves now.")

# The current state of the jobs among some ids (those that exist), and of one job (JobNotFound).
Loader = Callable[[Collection[str]], Awaitable[Sequence[jobs_pb2.Job]]]
Reader = Callable[[str], Awaitable[jobs_pb2.Job]]


@dataclass(frozen=True)
class WatchPolicy:
    """Bounds and timings of WatchJob."""

    max_watchers: int = 1000
    keepalive_seconds: float = 15.0
    resync_seconds: float = 30.0


class TooManyWatchers(ResourceExhausted):
    """This process follows as many streams as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this jobs service follows {limit} streams already; try again later",
            limit=f"JOBS_WATCH_MAX_WATCHERS={limit}",
            subject="watchers",
            retry_after=1.0,
        )


class WatchHub:
    """Fans the events of one Redis connection out to the local watchers' queues."""

    def __init__(self, client: aioredis.Redis, load: Loader, policy: WatchPolicy, *, key_prefix: str) -> None:
        self._client = client
        self._load = load
        self._policy = policy
        self._key_prefix = key_prefix
        self._queues: dict[str, set[asyncio.Queue[jobs_pb2.Job]]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._pubsub: PubSub | None = None
        self._watchers = 0
        self._stopping = False
        self._resync: asyncio.Task[None] | None = None

    @property
    def policy(self) -> WatchPolicy:
        """The bounds and timings the hub was made with."""
        return self._policy

    @contextlib.asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        """Counts one watcher while it lasts; TooManyWatchers past the limit."""
        if self._stopping:
            raise Unavailable("the jobs service is stopping; reconnect")
        if self._watchers >= self._policy.max_watchers:
            raise TooManyWatchers(self._policy.max_watchers)
        self._watchers += 1
        WATCHERS.inc()
        try:
            yield
        finally:
            self._watchers -= 1
            WATCHERS.dec()

    @contextlib.asynccontextmanager
    async def follow(self, job_id: str) -> AsyncIterator[asyncio.Queue[jobs_pb2.Job]]:
        """A queue of the job's states, once Redis confirmed the subscription of its channel."""
        channel = channel_of(self._key_prefix, job_id)
        queue: asyncio.Queue[jobs_pb2.Job] = asyncio.Queue(QUEUE_SIZE)
        self._queues.setdefault(job_id, set()).add(queue)
        try:
            confirmed = self._confirmed.setdefault(channel, asyncio.Event())
            if not confirmed.is_set() and self._pubsub is not None:
                with contextlib.suppress(RedisError, OSError):  # the reader reconnects and resubscribes
                    await self._pubsub.subscribe(channel)
            try:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                    await confirmed.wait()
            except TimeoutError:
                raise Unavailable("live events are unavailable (Redis does not answer); try again later") from None
            yield queue
        finally:
            watchers = self._queues.get(job_id, set())
            watchers.discard(queue)
            if not watchers:
                self._queues.pop(job_id, None)

    def stop(self) -> None:
        """Ends every stream (UNAVAILABLE: the clients reconnect elsewhere) and refuses new ones."""
        self._stopping = True
        for queues in self._queues.values():
            for queue in queues:
                _offer(queue, _CLOSED)

    async def run(self) -> None:
        """Reads the pub/sub connection forever, reconnecting after a loss."""
        delay = 0.1
        while True:
            pubsub = self._client.pubsub()
            try:
                await self._serve(pubsub)
            except (RedisError, OSError) as exc:
                if self._pubsub is not None:  # it was connected: a fresh loss, retried at once
                    delay = 0.1
                log.warning("watch.redis_lost", error=repr(exc), retry_in=delay)
            except Exception:
                log.exception("watch.reader_failed", retry_in=delay)
            finally:
                self._pubsub = None
                # The new connection subscribes anew: only the watched channels, none confirmed yet.
                watched = {channel_of(self._key_prefix, job_id) for job_id in self._queues}
                self._confirmed = {name: event for name, event in self._confirmed.items() if name in watched}
                for event in self._confirmed.values():
                    event.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _serve(self, pubsub: PubSub) -> None:
        await pubsub.connect()  # type: ignore[no-untyped-call]
        # From here on new watchers subscribe by themselves; those before are in the list.
        self._pubsub = pubsub
        channels = [channel_of(self._key_prefix, job_id) for job_id in self._queues]
        if channels:
            await pubsub.subscribe(*channels)
            self._start_resync(set(self._queues))  # whatever was published while we were away
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._policy.resync_seconds
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is not None:
                self._dispatch(message)
            if loop.time() >= next_tick:
                next_tick = loop.time() + self._policy.resync_seconds
                await self._drop_idle(pubsub)
                self._start_resync(set(self._queues))

    def _dispatch(self, message: dict[str, object]) -> None:
        if message["type"] not in ("subscribe", "message"):
            return
        channel = message["channel"]
        name = channel.decode() if isinstance(channel, bytes) else str(channel)
        if message["type"] == "subscribe":
            self._confirmed.setdefault(name, asyncio.Event()).set()
        elif message["type"] == "message" and isinstance(message["data"], bytes):
            try:
                job = jobs_pb2.Job.FromString(message["data"])
            except Exception:
                log.warning("watch.bad_message", channel=name)
                return
            self._hand_out(job)

    def _hand_out(self, job: jobs_pb2.Job) -> None:
        for queue in self._queues.get(job.id, ()):
            _offer(queue, job)

    async def _drop_idle(self, pubsub: PubSub) -> None:
        """Unsubscribes the confirmed channels nobody watches any more."""
        watched = {channel_of(self._key_prefix, job_id) for job_id in self._queues}
        idle = [name for name, event in self._confirmed.items() if event.is_set() and name not in watched]
        for name in idle:
            del self._confirmed[name]
        if idle:
            await pubsub.unsubscribe(*idle)

    def _start_resync(self, job_ids: set[str]) -> None:
        if job_ids and (self._resync is None or self._resync.done()):
            self._resync = asyncio.create_task(self._resync_jobs(job_ids), name="watch-resync")

    async def _resync_jobs(self, job_ids: set[str]) -> None:
        """Hands out the current state of the watched jobs, read in one query once subscribed."""
        channels = [self._confirmed.setdefault(channel_of(self._key_prefix, i), asyncio.Event()) for i in job_ids]
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await asyncio.gather(*(event.wait() for event in channels))
            jobs = await self._load(job_ids)
        except Exception as exc:
            log.warning("watch.resync_failed", jobs=len(job_ids), error=repr(exc))
            return
        for job in jobs:
            self._hand_out(job)


def _offer(queue: asyncio.Queue[jobs_pb2.Job], job: jobs_pb2.Job) -> None:
    """Puts without waiting; a full queue loses its oldest state, never the newest."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(job)


async def watch_job(hub: WatchHub, job_id: str, *, after: int, read: Reader) -> AsyncIterator[jobs_pb2.JobEvent]:
    """The current state of the job (unless after names it already), then each newer one, until
    a final state; a keep-alive when nothing happened for a while."""
    async with hub.admitted():
        job = await read(job_id)
        if job.status in FINAL_PROTO:  # it never changes again: no subscription needed
            if job.event_id != after:
                yield jobs_pb2.JobEvent(event_id=job.event_id, type=event_type(job, None), job=job)
            return
        async with hub.follow(job_id) as queue:
            job = await read(job_id)  # read after subscribing: nothing falls between
            last_id = after if after <= job.event_id else 0
            previous: int | None = None
            while True:
                if job is _CLOSED:
                    raise Unavailable("the jobs service is stopping; reconnect")
                if job.event_id > last_id:
                    yield jobs_pb2.JobEvent(event_id=job.event_id, type=event_type(job, previous), job=job)
                    last_id, previous = job.event_id, job.status
                    if job.status in FINAL_PROTO:
                        return
                while True:
                    try:
                        async with asyncio.timeout(hub.policy.keepalive_seconds):
                            job = await queue.get()
                        break
                    except TimeoutError:
                        yield jobs_pb2.JobEvent(event_id=last_id, type=KEEPALIVE)
