"""The Celery contract between the jobs service (producer) and the worker (consumer)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from celery import Celery
from kombu import Exchange, Queue

from services.core.queues import QUEUES
from services.core.settings import CoreSettings

GENERATE_VIDEO = "videogen.generate_video"
# How many earlier deliveries of one message a start may take over from (StartJobRequest's
# resumes_worker_ids): an outage longer than that many retries has left the attempt to the reaper.
MAX_RESUMED_WORKERS = 16
CANCEL_PROVIDER_TASK = "videogen.cancel_provider_task"


@dataclass(frozen=True)
class GenerateVideo:
    """The one payload of the generation task; fields may be added, never removed."""

    job_id: str
    # The job's retry_count when published: a stale message for an older attempt is skipped.
    attempt: int
    request_id: str | None = None
    # The worker ids of this message's earlier deliveries that gave up not knowing whether their
    # start landed (the jobs service unreachable): this delivery may take their attempt over.
    resumes: tuple[str, ...] = ()

    def to_kwargs(self) -> dict[str, Any]:
        """The task's keyword arguments (without resumes while there are none)."""
        kwargs = asdict(self)
        if not self.resumes:
            del kwargs["resumes"]
        else:
            kwargs["resumes"] = list(self.resumes)
        return kwargs

    def resumed_by(self, worker_id: str) -> GenerateVideo:
        """This message again, for a later delivery that may take over worker_id's attempt."""
        return replace(self, resumes=(*self.resumes, worker_id)[-MAX_RESUMED_WORKERS:])


@dataclass(frozen=True)
class CancelProviderTask:
    """The payload of the task that cancels a provider's task no worker will come back for (its
    job was cancelled, or failed, while the worker that started it was gone)."""

    job_id: str
    provider: str
    task_id: str

    def to_kwargs(self) -> dict[str, Any]:
        """The task's keyword arguments."""
        return asdict(self)


def broker_url(settings: CoreSettings, redis_url: str) -> str:
    """CELERY_BROKER_URL, else the Redis URL in kombu's form (unix sockets as redis+socket://)."""
    url = settings.celery_broker_url or redis_url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        db = parse_qs(parts.query).get("db", ["0"])[0]
        return f"redis+socket://{parts.path}?virtual_host={db}"
    return url


def broker_redis_url(broker: str) -> str:
    """The redis-py URL of a kombu Redis broker URL (the inverse of broker_url for sockets)."""
    parts = urlsplit(broker)
    if parts.scheme == "redis+socket":
        db = parse_qs(parts.query).get("virtual_host", ["0"])[0]
        return f"unix://{parts.path}?db={db}"
    return broker


def create_celery(settings: CoreSettings, *, broker: str, name: str = "videogen") -> Celery:
    """A Celery app configured for at-least-once, priority-ordered delivery."""
    app = Celery(name, broker=broker, set_as_current=False)
    app.conf.update(
        # Each queue its own direct exchange and routing key: a message lands in exactly one.
        task_queues=[Queue(queue, Exchange(queue, type="direct"), routing_key=queue) for queue in QUEUES],
        task_default_queue="default",
        task_default_exchange="default",
        task_default_routing_key="default",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A slot holds one message: the next one is taken from the highest non-empty queue.
        worker_prefetch_multiplier=1,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=settings.celery_task_soft_time_limit,
        task_time_limit=settings.celery_task_time_limit,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={
            # BRPOP over the queues in the declared order (high, default, low), not round robin.
            "queue_order_strategy": "priority",
            # An unacknowledged message comes back only after the hard limit has surely passed.
            "visibility_timeout": int(settings.celery_task_time_limit) + 600,
            "global_keyprefix": settings.celery_key_prefix,
            "socket_timeout": 5,
            "socket_connect_timeout": 5,
            "health_check_interval": 10,
        },
        worker_hijack_root_logger=False,
        # A Redis blip must not kill a running render: its message stays unacknowledged, and a
        # copy redelivered later names the same attempt, which the jobs service refuses to start
        # twice (the worker skips it).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


def queue_keys(settings: CoreSettings, queue: str) -> list[str]:
    """The Redis lists that hold a queue's messages (kombu keeps one per priority step)."""
    prefix = settings.celery_key_prefix
    return [f"{prefix}{queue}", *(f"{prefix}{queue}\x06\x16{step}" for step in (3, 6, 9))]


def depth_keys(settings: CoreSettings) -> list[str]:
    """Every Redis list of every queue, in QUEUES order: what depths_of() reads the lengths of."""
    return [key for queue in QUEUES for key in queue_keys(settings, queue)]


def depths_of(settings: CoreSettings, lengths: Iterable[int]) -> dict[str, int]:
    """Messages waiting in each queue, from the lengths of depth_keys(settings)."""
    counts = iter(lengths)
    return {queue: sum(int(next(counts)) for _ in queue_keys(settings, queue)) for queue in QUEUES}
