"""The asyncio client: the same calls as Client, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from videogen_client import _protocol as p
from videogen_client.errors import JobFailed, VideoGenError
from videogen_client.models import Job, JobAttempt, JobEvent, JobPage, ProviderStatus


class AsyncClient:
    """Client's asyncio twin (see videogen_client.client.Client)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url, headers = p.settings(base_url, api_key)
        self.base_url = url
        self.max_retries = max_retries
        self._http = httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: p.Call) -> Any:
        attempt = 0
        while True:
            try:
                answer = await self._http.request(
                    call.method, call.path, params=call.params, json=call.body, headers=call.headers
                )
                return p.read(answer.status_code, answer.content, answer.headers.get("retry-after"))
            except (httpx.TransportError, VideoGenError) as error:
                if attempt >= self.max_retries or not p.worth_retrying(error, call):
                    if isinstance(error, httpx.TransportError):
                        raise VideoGenError(f"{call.method} {call.path}: {error!r}") from error
                    raise
                await asyncio.sleep(p.pause_before(attempt, error))
                attempt += 1

    async def create_job(
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
        call = p.create_call(
            prompt,
            user_id=user_id,
            metadata=metadata,
            max_retries=max_retries,
            webhook_url=webhook_url,
            webhook_events=webhook_events,
            idempotency_key=idempotency_key,
        )
        return Job.from_json(await self._send(call))

    async def get_job(self, job_id: str) -> Job:
        return Job.from_json(await self._send(p.Call("GET", p.job_path(job_id))))

    async def list_jobs(
        self,
        *,
        user_id: str | None = None,
        status: str | None = None,
        take: int = 20,
        cursor: str | None = None,
        skip: int = 0,
    ) -> JobPage:
        call = p.list_call(user_id=user_id, status=status, take=take, cursor=cursor, skip=skip)
        return JobPage.from_json(await self._send(call))

    async def cancel_job(self, job_id: str) -> Job | None:
        body = await self._send(p.Call("DELETE", p.job_path(job_id)))
        return Job.from_json(body) if body else None

    async def attempts(self, job_id: str) -> list[JobAttempt]:
        """The job's attempts that ended, oldest first (the one running now is the job itself)."""
        body = await self._send(p.Call("GET", p.job_path(job_id) + "/attempts"))
        return [JobAttempt.from_json(item) for item in body["attempts"]]

    async def providers(self) -> list[ProviderStatus]:
        body = await self._send(p.Call("GET", "/api/v1/providers/status"))
        return [ProviderStatus.from_json(item) for item in body["providers"]]

    async def stream(self, job_id: str, *, last_event_id: str | None = None) -> AsyncIterator[JobEvent]:
        """The job's events as they happen, to its final one; resumed after a dropped connection."""
        parser = p.EventParser()
        parser.last_id = last_event_id
        attempt = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if parser.last_id:
                headers["Last-Event-ID"] = parser.last_id
            try:
                async with self._http.stream(
                    "GET", f"{p.job_path(job_id)}/events", headers=headers, timeout=None
                ) as answer:
                    if answer.status_code == 204:
                        return
                    if answer.status_code != 200:
                        p.read(answer.status_code, await answer.aread(), answer.headers.get("retry-after"))
                    async for line in answer.aiter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        attempt = 0
                        yield event
                        if event.job.final:
                            return
            except (httpx.TransportError, VideoGenError) as error:
                if attempt >= self.max_retries or not p.worth_retrying(error, p.Call("GET", "")):
                    raise
                await asyncio.sleep(p.pause_before(attempt, error))
                attempt += 1

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_event: Callable[[JobEvent], None] | None = None,
        raise_on_failure: bool = True,
    ) -> Job:
        """Follows the job until it is final (JobFailed unless completed; TimeoutError past timeout)."""
        job = None

        async def follow() -> None:
            nonlocal job
            async for event in self.stream(job_id):
                job = event.job
                if on_event is not None:
                    on_event(event)

        started = time.monotonic()
        try:
            await asyncio.wait_for(follow(), timeout)
        except TimeoutError:
            raise TimeoutError(f"job {job_id} not final within {time.monotonic() - started:.0f}s") from None
        final = job if job is not None and job.final else await self.get_job(job_id)
        if raise_on_failure and final.status != "completed":
            raise JobFailed(final)
        return final

    async def download(self, job: Job | str, path: str | Path | None = None) -> Path:
        """Saves a completed job's video (to `<id>.mp4` unless path is given)."""
        job = await self.get_job(job) if isinstance(job, str) else job
        if job.result is None:
            raise JobFailed(job)
        target = Path(path) if path is not None else Path(f"{job.id}.mp4")
        partial = target.with_name(target.name + ".part")
        async with self._http.stream("GET", job.result.video_url, headers={"Accept": "*/*"}) as answer:
            if answer.status_code != 200:
                p.read(answer.status_code, await answer.aread(), answer.headers.get("retry-after"))
            with partial.open("wb") as out:
                async for chunk in answer.aiter_bytes():
                    out.write(chunk)
        partial.replace(target)
        return target
