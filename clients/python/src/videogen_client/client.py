"""The synchronous client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from videogen_client import _protocol as p
from videogen_client.errors import JobFailed, VideoGenError
from videogen_client.models import Job, JobAttempt, JobEvent, JobPage, ProviderStatus


class Client:
    """The VideoGen API over HTTP: `Client()` talks to VIDEOGEN_URL (http://localhost:8000) with
    VIDEOGEN_API_KEY, asks again through rate limits, outages and lost connections (a create with
    its Idempotency-Key, so it is created once), and follows jobs over Server-Sent Events."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url, headers = p.settings(base_url, api_key)
        self.base_url = url
        self.max_retries = max_retries
        # Whether calls carry an X-API-Key (without one, development acts as the admin).
        self.has_key = "X-API-Key" in headers
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: p.Call) -> Any:
        attempt = 0
        while True:
            try:
                answer = self._http.request(
                    call.method, call.path, params=call.params, json=call.body, headers=call.headers
                )
                return p.read(answer.status_code, answer.content, answer.headers.get("retry-after"))
            except (httpx.TransportError, VideoGenError) as error:
                if attempt >= self.max_retries or not p.worth_retrying(error, call):
                    if isinstance(error, httpx.TransportError):
                        raise VideoGenError(f"{call.method} {call.path}: {error!r}") from error
                    raise
                time.sleep(p.pause_before(attempt, error))
                attempt += 1

    def create_job(
        self,
        prompt: str,
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        max_retries: int | None = None,
        webhook_url: str | None = None,
        webhook_events: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> Job:
        """Queues a job; `metadata` carries `priority`, `provider`, `model`, `durationSeconds`..."""
        call = p.create_call(
            prompt,
            user_id=user_id,
            metadata=metadata,
            max_retries=max_retries,
            webhook_url=webhook_url,
            webhook_events=webhook_events,
            idempotency_key=idempotency_key,
        )
        return Job.from_json(self._send(call))

    def get_job(self, job_id: str) -> Job:
        return Job.from_json(self._send(p.Call("GET", p.job_path(job_id))))

    def list_jobs(
        self,
        *,
        user_id: str | None = None,
        status: str | None = None,
        take: int = 20,
        cursor: str | None = None,
        skip: int = 0,
    ) -> JobPage:
        """One page, newest first; pass its `next_cursor` as `cursor` for the next."""
        call = p.list_call(user_id=user_id, status=status, take=take, cursor=cursor, skip=skip)
        return JobPage.from_json(self._send(call))

    def iter_jobs(self, *, user_id: str | None = None, status: str | None = None, take: int = 100) -> Iterator[Job]:
        """Every job of the list, page after page by cursor (no gap, no repeat under inserts)."""
        cursor = None
        while True:
            page = self.list_jobs(user_id=user_id, status=status, take=take, cursor=cursor)
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def cancel_job(self, job_id: str) -> Job | None:
        """Cancels a queued or processing job (answered, cancelled); a finished one is deleted
        with its video (None)."""
        body = self._send(p.Call("DELETE", p.job_path(job_id)))
        return Job.from_json(body) if body else None

    def attempts(self, job_id: str) -> list[JobAttempt]:
        """The job's attempts that ended, oldest first (the one running now is the job itself)."""
        body = self._send(p.Call("GET", p.job_path(job_id) + "/attempts"))
        return [JobAttempt.from_json(item) for item in body["attempts"]]

    def providers(self) -> list[ProviderStatus]:
        body = self._send(p.Call("GET", "/api/v1/providers/status"))
        return [ProviderStatus.from_json(item) for item in body["providers"]]

    def stream(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[JobEvent]:
        """The job's events as they happen, from its current state to its final one; a dropped
        connection is resumed after the last event seen (Last-Event-ID)."""
        return self._stream(job_id, last_event_id, deadline=None)

    def _stream(self, job_id: str, last_event_id: str | None, *, deadline: float | None) -> Iterator[JobEvent]:
        parser = p.EventParser()
        parser.last_id = last_event_id
        attempt = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if parser.last_id:
                headers["Last-Event-ID"] = parser.last_id
            try:
                with self._http.stream("GET", f"{p.job_path(job_id)}/events", headers=headers, timeout=None) as answer:
                    if answer.status_code == 204:
                        return
                    if answer.status_code != 200:
                        p.read(answer.status_code, answer.read(), answer.headers.get("retry-after"))
                    for event in p.events_of(p.until(answer.iter_lines(), deadline), parser):
                        attempt = 0
                        yield event
                        if event.job.final:
                            return
            except (httpx.TransportError, VideoGenError) as error:
                if attempt >= self.max_retries or not p.worth_retrying(error, p.Call("GET", "")):
                    raise
                time.sleep(p.pause_before(attempt, error))
                attempt += 1

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[JobEvent], None] | None = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Follows the job until it is final: the final job; JobFailed when it failed or was
        cancelled (unless raise_on_failure is False); TimeoutError past timeout seconds (noticed
        at the next event or keep-alive, every 15 s at most)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = None
        for event in self._stream(job_id, None, deadline=deadline):
            job = event.job
            if on_event is not None:
                on_event(event)
        job = job if job is not None and job.final else self.get_job(job_id)
        if raise_on_failure and job.status != "completed":
            raise JobFailed(job)
        return job

    def download(self, job: Job | str, path: str | Path | None = None) -> Path:
        """Saves a completed job's video (to `<id>.mp4` unless path is given) and answers where."""
        job = self.get_job(job) if isinstance(job, str) else job
        if job.result is None:
            raise JobFailed(job)
        target = Path(path) if path is not None else Path(f"{job.id}.mp4")
        with self._http.stream("GET", job.result.video_url, headers={"Accept": "*/*"}) as answer:
            if answer.status_code != 200:
                p.read(answer.status_code, answer.read(), answer.headers.get("retry-after"))
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as out:
                for chunk in answer.iter_bytes():
                    out.write(chunk)
            partial.replace(target)
        return target
