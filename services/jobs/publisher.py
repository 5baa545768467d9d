"""Publishes generation tasks on the Celery queues, off the event loop."""

from __future__ import annotations

import asyncio

from celery import Celery

from services.core.logging import get_logger
from services.core.tasks import GENERATE_VIDEO, GenerateVideo

log = get_logger(__name__)


class JobPublisher:
    """Sends one task message per job attempt to the queue the job names."""

    def __init__(self, app: Celery, *, timeout: float = 5.0) -> None:
        self._app = app
        self._timeout = timeout

    async def publish(self, payload: GenerateVideo, *, queue: str) -> bool:
        """Whether the broker took the message; a failure is logged, never raised."""
        try:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation.
            async with asyncio.timeout(self._timeout):
                await asyncio.to_thread(self._send, payload, queue)
        except Exception as exc:
            log.warning("job.publish_failed", job_id=payload.job_id, queue=queue, error=repr(exc))
            return False
        return True

    def _send(self, payload: GenerateVideo, queue: str) -> None:
        self._app.send_task(
            GENERATE_VIDEO,
            kwargs=payload.to_kwargs(),
            queue=queue,
            headers={"request_id": payload.request_id or ""},
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.1, "interval_step": 0.2},
        )

    def close(self) -> None:
        """Closes the broker connections."""
        self._app.close()
