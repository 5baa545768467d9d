"""The shared gRPC bootstrap: errors map to statuses without leaking internals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.grpc_server import GrpcApp, ServiceBinding, start_grpc_app
from videogen.v1 import jobs_pb2, jobs_pb2_grpc


class ExplodingServicer(jobs_pb2_grpc.JobServiceServicer):
    """Raises what the request's id names."""

    async def GetJob(self, request: jobs_pb2.GetJobRequest, context: Any) -> jobs_pb2.Job:
        if request.id == "invalid":
            raise InvalidArgument("id", "is wrong")
        if request.id == "precondition":
            raise FailedPrecondition("not now")
        if request.id == "database":
            raise ConnectionRefusedError("connect call failed")
        raise RuntimeError("secret internal detail")


@pytest.fixture
async def app() -> AsyncIterator[GrpcApp]:
    binding = ServiceBinding(
        ExplodingServicer(),  # type: ignore[abstract]
        jobs_pb2_grpc.add_JobServiceServicer_to_server,
        "videogen.v1.JobService",
    )
    started = await start_grpc_app([binding], address="127.0.0.1:0", max_message_bytes=1024 * 1024)
    yield started
    await started.stop(0)


@pytest.mark.parametrize(
    ("job_id", "code", "details"),
    [
        ("invalid", grpc.StatusCode.INVALID_ARGUMENT, "id: is wrong"),
        ("precondition", grpc.StatusCode.FAILED_PRECONDITION, "not now"),
        ("database", grpc.StatusCode.UNAVAILABLE, "the database is unavailable, try again later"),
        ("other", grpc.StatusCode.INTERNAL, "internal error"),
    ],
)
async def test_errors_map_to_statuses(app: GrpcApp, job_id: str, code: grpc.StatusCode, details: str) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(id=job_id))

    assert caught.value.code() == code
    assert caught.value.details() == details


async def test_a_message_over_the_limit_is_refused(app: GrpcApp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(id="x" * 2 * 1024 * 1024))

    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
