"""The shared gRPC bootstrap: errors map to statuses without leaking internals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.grpc_server import GrpcApp, ServiceBinding, start_grpc_app
from videogen.v1 import jobs_pb2, jobs_pb2_grpc, providers_pb2, providers_pb2_grpc, worker_pb2, worker_pb2_grpc


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


# Bytes that are no protobuf message of any type: a truncated length-delimited field, a varint
# that never ends, a truncated fixed64, an invalid wire type, an unterminated group.
MALFORMED = [b"\x0a\x05ab", b"\x08" + b"\xff" * 11, b"\x09\x01\x02", b"\x0f\x01", b"\x0b\x01"]


@pytest.fixture
async def every_service() -> AsyncIterator[GrpcApp]:
    """A server with all three services on the bare generated base classes."""
    bindings = [
        ServiceBinding(
            jobs_pb2_grpc.JobServiceServicer(),  # type: ignore[abstract]
            jobs_pb2_grpc.add_JobServiceServicer_to_server,
            "jobs",
        ),
        ServiceBinding(
            providers_pb2_grpc.ProviderServiceServicer(),  # type: ignore[abstract]
            providers_pb2_grpc.add_ProviderServiceServicer_to_server,
            "providers",
        ),
        ServiceBinding(
            worker_pb2_grpc.WorkerServiceServicer(),  # type: ignore[abstract]
            worker_pb2_grpc.add_WorkerServiceServicer_to_server,
            "worker",
        ),
    ]
    started = await start_grpc_app(bindings, address="127.0.0.1:0", max_message_bytes=1024 * 1024)
    yield started
    await started.stop(0)


async def test_a_malformed_message_to_any_method_is_invalid_argument(every_service: GrpcApp) -> None:
    methods = [
        f"/{service.full_name}/{method.name}"
        for module in (jobs_pb2, providers_pb2, worker_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if not method.client_streaming and not method.server_streaming
    ]
    assert len(methods) >= 16
    async with grpc.aio.insecure_channel(f"127.0.0.1:{every_service.port}") as channel:
        for path in methods:
            call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            for payload in MALFORMED:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call(payload, timeout=5)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (path, payload)
                assert str(caught.value.details()).startswith("request: is not a valid protobuf message")

        # A well-formed message still reaches the servicer, whose base class raises NotImplementedError.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(id="x"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
