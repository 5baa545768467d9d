"""The merging of several jobs' events into one stream, on its own: keep-alives, ends, cuts."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from services.gateway.streams import END, changes, checked_ids
from videogen.v1 import jobs_pb2


def event(job_id: str, percent: int) -> jobs_pb2.JobEvent:
    job = jobs_pb2.Job(id=job_id, status=jobs_pb2.JOB_STATUS_PROCESSING, progress_percent=percent)
    return jobs_pb2.JobEvent(event_id=percent, type="job.progress", job=job)


async def collect(queue: asyncio.Queue[tuple[str, object]], following: int, keepalive: float) -> list[str]:
    async with asyncio.timeout(5):
        return [frame async for frame in changes(queue, following, keepalive)]


async def test_the_calls_own_keep_alives_do_not_hold_back_the_streams() -> None:
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()

    async def backend() -> None:
        for _ in range(8):  # a call's keep-alive every 0.05 s, for 0.4 s: no job changes
            queue.put_nowait(("a", jobs_pb2.JobEvent(event_id=1, type="job.keepalive")))
            await asyncio.sleep(0.05)
        queue.put_nowait(("a", END))

    feeding = asyncio.create_task(backend())
    frames = await collect(queue, 1, keepalive=0.15)
    await feeding

    assert 2 <= frames.count(": keep-alive\n\n") <= 3 and len(frames) == frames.count(": keep-alive\n\n")


async def test_events_interleave_until_every_job_ended_and_a_cut_ends_the_stream() -> None:
    queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    for item in [("a", event("a", 10)), ("b", event("b", 20)), ("a", END), ("b", event("b", 30)), ("b", END)]:
        queue.put_nowait(item)
    cut: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
    lost = grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "lost", None)
    for item in [("a", event("a", 10)), ("b", lost), ("a", event("a", 20))]:
        cut.put_nowait(item)

    ended, cut_short = await collect(queue, 2, keepalive=5), await collect(cut, 2, keepalive=5)

    assert [f.split('"id":"')[1][0] for f in ended] == ["a", "b", "b"]
    assert len(cut_short) == 1  # the stream ends at the cut; the client asks again


@pytest.mark.parametrize(
    ("values", "expected"),
    [(["ca", "cb", "ca"], ["ca", "cb"]), (["c" + "0" * 24], ["c" + "0" * 24])],
)
def test_ids_are_followed_once_in_their_order(values: list[str], expected: list[str]) -> None:
    assert checked_ids(values) == expected
