"""Long remote renders for the outage scenarios: a fake Runway whose tasks take wall-clock time.

The outage scenarios need jobs that are *processing* for longer than the outage, at no CPU cost,
and a way to see paid work done twice: every task the fake creates is a generation paid for.
The fake speaks Runway's documented protocol (tests/support/fake_runway.py); a task stays
RUNNING, its progress growing, until its render time has passed, then SUCCEEDED.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from pathlib import Path

from tests.chaos.load import Accepted, Api, JobSpec
from tests.support.fake_provider import Request, Response
from tests.support.fake_runway import FakeRunway, Task

KEY = "chaos-runway-key-0123456789abcdef"
KEY_ENV = "CHAOS_RUNWAY_KEY"
# What Runway makes that routing accepts for a job naming it (gen4.5, 5 s, 16:9).
REMOTE_VIDEO = {"durationSeconds": 5, "aspectRatio": "16:9", "provider": "runway"}


class SlowRunway(FakeRunway):
    """Runway whose tasks run for `render_seconds` of wall-clock time each."""

    def __init__(self, *, render_seconds: float) -> None:
        super().__init__(api_key=KEY)
        self.render_seconds = render_seconds
        self._created_at: dict[str, float] = {}

    def _create(self, request: Request) -> Response:
        response = super()._create(request)
        if response.status == 200 and isinstance(response.body, dict):
            with self.lock:
                self._created_at[str(response.body["id"])] = time.monotonic()
        return response

    def _advance(self, task: Task) -> None:
        if task.status in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return
        elapsed = time.monotonic() - self._created_at.get(task.id, time.monotonic())
        if elapsed >= self.render_seconds:
            task.status, task.progress = "SUCCEEDED", None
        else:
            task.status, task.progress = "RUNNING", round(elapsed / self.render_seconds, 2)

    def paid(self) -> Counter[str]:
        """How many generations were paid for, per prompt (one prompt per job)."""
        with self.lock:
            return Counter(str(body.get("promptText")) for _, body in self.created)


def registry_file(fake: SlowRunway, directory: Path) -> Path:
    """A PROVIDERS_CONFIG with the built-in `local` provider and the slow Runway."""
    runway = {
        "name": "runway",
        "kind": "runway",
        "base_url": fake.base_url,
        "api_key_env": KEY_ENV,
        "models": ["gen4.5"],
        "poll_interval_seconds": 0.5,
        "timeout_seconds": 600,
    }
    path = directory / "providers.json"
    path.write_text(json.dumps({"providers": [{"name": "local", "kind": "local"}, runway]}))
    return path


async def create_remote_jobs(api: Api, count: int, *, label: str) -> list[Accepted]:
    """Creates count jobs rendered by the slow Runway, through the edge."""
    accepted = []
    for index in range(count):
        body = {
            "userId": "chaos-remote",
            "prompt": f"chaos {label} remote job {index} {uuid.uuid4().hex[:8]}",
            "metadata": dict(REMOTE_VIDEO),
            "maxRetries": 3,
        }
        job = await api.create(JobSpec(f"chaos-remote-{uuid.uuid4().hex}", body), give_up_after=60)
        if job is not None:
            accepted.append(job)
    return accepted


async def wait_processing(api: Api, jobs: list[Accepted], *, timeout: float) -> int:
    """Waits (at most timeout) until every one of these jobs is processing; answers how many are."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [await api.status(job.job_id) for job in jobs]
        processing = statuses.count("processing")
        if processing == len(jobs) or time.monotonic() > deadline:
            return processing
        await asyncio.sleep(0.2)
