"""The luma kind end to end: the real worker process against a fake of Luma's Agents API."""

from __future__ import annotations

from collections.abc import Iterator

import av
import pytest

from tests.support.factories import create_job
from tests.support.fake_luma import FakeLuma
from tests.support.stack import StackFactory
from videogen.v1 import jobs_pb2

KEY = "luma-api-e2e-1f2e3d4c5b"


@pytest.fixture
def fake() -> Iterator[FakeLuma]:
    server = FakeLuma(api_key=KEY)
    server.start()
    yield server
    server.stop()


async def test_a_luma_job_completes_with_a_video_we_store_its_model_and_its_cost(
    start_stack: StackFactory, fake: FakeLuma, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUMA_E2E_KEY", KEY)
    entry = {
        "name": "luma",
        "kind": "luma",
        "base_url": f"{fake.base_url}/v1",
        "api_key_env": "LUMA_E2E_KEY",
        "poll_interval_seconds": 0.05,
        "timeout_seconds": 30,
    }
    stack = await start_stack(registry={"providers": [entry]}, luma_e2e_key=KEY)
    fake.expired_outputs = 1  # the first presigned URL has expired: a fresh one is read

    done = await stack.wait_for((await create_job(stack.jobs, metadata={"durationSeconds": 5})).id)

    assert done.status == jobs_pb2.JOB_STATUS_COMPLETED, done.error_message
    assert (done.used_provider, done.used_model) == ("luma", "ray-3.2")
    assert done.cost_usd == pytest.approx(0.30)
    assert [body["video"] for body in fake.created] == [{"duration": "5s", "resolution": "720p"}]
    path = stack.media / done.result.storage_key
    assert path.stat().st_size == done.result.size_bytes > 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(stream)) > 0
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 96, 64)
    assert KEY not in stack.worker.output()
