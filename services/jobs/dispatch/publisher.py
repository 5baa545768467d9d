"""Publishes generation tasks on the Celery queues from the event loop, without a thread hop.

The message is the one Celery's `send_task` writes with kombu's Redis transport (protocol 2:
Celery builds the headers and body, kombu's envelope carries them base64-encoded), pushed with
one LPUSH by the service's asyncio Redis client. tests/jobs/test_publisher.py holds it equal to
what `send_task` writes, and the worker consumes it in every end-to-end test.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from kombu.utils.json import dumps

from services.core import tracing
from services.core.logging import get_logger
from services.core.queues import HIGH_PRIORITY
from services.core.tasks import CANCEL_PROVIDER_TASK, GENERATE_VIDEO, CancelProviderTask, GenerateVideo

log = get_logger(__name__)
# kombu's persistent delivery mode, and the priority that maps to the queue's own list.
PERSISTENT = 2
DEFAULT_PRIORITY = 0


class JobPublisher:
    """Sends one task message per job attempt to the queue the job names."""

    def __init__(self, app: Celery, client: aioredis.Redis, *, key_prefix: str = "", timeout: float = 5.0) -> None:
        self._app = app
        self._client = client
        self._prefix = key_prefix
        self._timeout = timeout

    async def publish(self, payload: GenerateVideo, *, queue: str, trace: str | None = None) -> bool:
        """Whether the broker took the message; a failure is logged, never raised. trace: the
        traceparent the message continues (the current context's when None)."""
        message = self.message(payload, queue, trace=trace)
        return await self._push(message, queue=queue, job_id=payload.job_id)

    async def publish_cancel(self, payload: CancelProviderTask) -> bool:
        """Asks a worker to cancel a provider task nobody will come back for (on the high queue:
        every minute of it costs); a failure is logged, never raised."""
        message = self.envelope(CANCEL_PROVIDER_TASK, payload.to_kwargs(), HIGH_PRIORITY, request_id=None)
        return await self._push(message, queue=HIGH_PRIORITY, job_id=payload.job_id)

    async def _push(self, message: bytes, *, queue: str, job_id: str) -> bool:
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation.
            async with asyncio.timeout(self._timeout):
                await self._client.lpush(f"{self._prefix}{queue}", message)
        except Exception as exc:
            log.warning("job.publish_failed", job_id=job_id, queue=queue, error=repr(exc))
            return False
        return True

    def message(self, payload: GenerateVideo, queue: str, *, trace: str | None = None) -> bytes:
        """The kombu Redis envelope of a generation task message, as send_task would store it."""
        return self.envelope(GENERATE_VIDEO, payload.to_kwargs(), queue, request_id=payload.request_id, trace=trace)

    def envelope(
        self, name: str, kwargs: dict[str, Any], queue: str, *, request_id: str | None, trace: str | None = None
    ) -> bytes:
        """The kombu Redis envelope of a message of task name, as send_task would store it."""
        task_id = str(uuid.uuid4())
        task = self._app.amqp.as_task_v2(task_id, name, kwargs=kwargs, ignore_result=None)
        headers: dict[str, Any] = {**task.headers, "request_id": request_id or ""}
        # The create request's trace goes on in the worker (W3C traceparent; tracing on only).
        tracing.inject(headers, parent=trace)
        envelope = {
            "body": base64.b64encode(dumps(task.body).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **task.properties,
                "reply_to": self._app.thread_oid,
                "delivery_mode": PERSISTENT,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": DEFAULT_PRIORITY,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        text: str = dumps(envelope)
        return text.encode()

    async def close(self) -> None:
        """Closes the broker connections."""
        self._app.close()
        await self._client.aclose()
