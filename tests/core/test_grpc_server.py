"""The shared gRPC bootstrap: errors map to statuses without leaking internals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.core import db
from services.core.auth import Authenticator, CallGuard
from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.grpc_server import GrpcApp, ServiceBinding, start_grpc_app
from tests.support.internal import internal_channel
from videogen.v1 import (
    jobs_pb2,
    jobs_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    providers_pb2,
    providers_pb2_grpc,
    routing_pb2,
    routing_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)

SECRET_KEY = "change-me-secret-key"  # the tests' default settings', whose credential internal_channel sends
JOB_SERVICE = jobs_pb2.DESCRIPTOR.services_by_name["JobService"]
INTERNAL = frozenset(
    {"videogen.v1.JobLifecycleService", "videogen.v1.ProviderRoutingService", "videogen.v1.WorkerService"}
)


def guard(*, required: bool = False, admin_key: str = "the-admin-key") -> CallGuard:
    """The guard of a development (or, required, production) server."""
    authenticator = Authenticator(admin_key=admin_key, user_keys=None, required=required)
    return CallGuard(secret_key=SECRET_KEY, internal=INTERNAL, authenticator=authenticator)


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
        JOB_SERVICE,
    )
    started = await start_grpc_app(
        [binding], address="127.0.0.1:0", max_message_bytes=1024 * 1024, guard=guard(), outage=db.is_unavailable
    )
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


MODULES = (jobs_pb2, lifecycle_pb2, providers_pb2, routing_pb2, worker_pb2)


def every_binding() -> list[ServiceBinding]:
    """All five services on the bare generated base classes, the workers' ones internal."""
    servicers: list[tuple[Any, Any, Any]] = [
        (jobs_pb2_grpc.JobServiceServicer, jobs_pb2_grpc.add_JobServiceServicer_to_server, JOB_SERVICE),
        (
            lifecycle_pb2_grpc.JobLifecycleServiceServicer,
            lifecycle_pb2_grpc.add_JobLifecycleServiceServicer_to_server,
            lifecycle_pb2.DESCRIPTOR.services_by_name["JobLifecycleService"],
        ),
        (
            providers_pb2_grpc.ProviderServiceServicer,
            providers_pb2_grpc.add_ProviderServiceServicer_to_server,
            providers_pb2.DESCRIPTOR.services_by_name["ProviderService"],
        ),
        (
            routing_pb2_grpc.ProviderRoutingServiceServicer,
            routing_pb2_grpc.add_ProviderRoutingServiceServicer_to_server,
            routing_pb2.DESCRIPTOR.services_by_name["ProviderRoutingService"],
        ),
        (
            worker_pb2_grpc.WorkerServiceServicer,
            worker_pb2_grpc.add_WorkerServiceServicer_to_server,
            worker_pb2.DESCRIPTOR.services_by_name["WorkerService"],
        ),
    ]
    return [
        ServiceBinding(servicer(), register, descriptor, internal=descriptor.full_name in INTERNAL)
        for servicer, register, descriptor in servicers
    ]


@pytest.fixture
async def every_service() -> AsyncIterator[GrpcApp]:
    """A development server with every service."""
    started = await start_grpc_app(every_binding(), address="127.0.0.1:0", max_message_bytes=1024 * 1024, guard=guard())
    yield started
    await started.stop(0)


async def test_a_malformed_message_to_any_method_is_invalid_argument(every_service: GrpcApp) -> None:
    methods = [
        f"/{service.full_name}/{method.name}"
        for module in MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if not method.client_streaming and not method.server_streaming
    ]
    assert len(methods) >= 20
    async with internal_channel(f"127.0.0.1:{every_service.port}") as channel:
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


@pytest.fixture
async def production_server() -> AsyncIterator[GrpcApp]:
    """A production server with every service: keys required."""
    started = await start_grpc_app(
        every_binding(), address="127.0.0.1:0", max_message_bytes=1024 * 1024, guard=guard(required=True)
    )
    yield started
    await started.stop(0)


async def code_of(call: Any) -> grpc.StatusCode:
    """The status a call ends with (OK when it answers)."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_in_production_a_public_call_needs_a_valid_key(production_server: GrpcApp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{production_server.port}") as channel:
        stub = providers_pb2_grpc.ProviderServiceStub(channel)
        request = providers_pb2.GetProvidersStatusRequest()

        without = await code_of(stub.GetProvidersStatus(request))
        wrong = await code_of(stub.GetProvidersStatus(request, metadata=(("x-api-key", "not-the-key"),)))
        # Admitted: the bare base class then raises NotImplementedError (INTERNAL), past the guard.
        admitted = await code_of(stub.GetProvidersStatus(request, metadata=(("x-api-key", "the-admin-key"),)))

    assert (without, wrong, admitted) == (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INTERNAL,
    )


async def test_internal_services_need_the_service_credential_even_with_the_admin_key(every_service: GrpcApp) -> None:
    target = f"127.0.0.1:{every_service.port}"
    request = lifecycle_pb2.StartJobRequest(id="cx", worker_id="w")
    admin = (("x-api-key", "the-admin-key"),)
    async with grpc.aio.insecure_channel(target) as plain, internal_channel(target) as credentialed:
        without = await code_of(lifecycle_pb2_grpc.JobLifecycleServiceStub(plain).StartJob(request, metadata=admin))
        forged = await code_of(
            lifecycle_pb2_grpc.JobLifecycleServiceStub(plain).StartJob(
                request, metadata=(("authorization", "Bearer guessed"),)
            )
        )
        other_secret = internal_channel(target, secret_key="another-deployment's-secret-key")
        async with other_secret:
            foreign = await code_of(lifecycle_pb2_grpc.JobLifecycleServiceStub(other_secret).StartJob(request))
        admitted = await code_of(lifecycle_pb2_grpc.JobLifecycleServiceStub(credentialed).StartJob(request))

    assert (without, forged, foreign) == (grpc.StatusCode.UNAUTHENTICATED,) * 3
    assert admitted == grpc.StatusCode.INTERNAL  # past the guard: the bare base class raises


async def test_health_stays_open_in_production(production_server: GrpcApp) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{production_server.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="liveness"))

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def reflect(channel: grpc.aio.Channel, request: Any, metadata: Any = ()) -> Any:
    """One reflection request and its answer."""
    from grpc_reflection.v1alpha import reflection_pb2_grpc

    async def ask() -> AsyncIterator[Any]:
        yield request

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    async for reply in stub.ServerReflectionInfo(ask(), metadata=metadata):
        return reply
    raise AssertionError("no reflection answer")


async def test_reflection_lists_and_describes_only_public_services(every_service: GrpcApp) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    async with grpc.aio.insecure_channel(f"127.0.0.1:{every_service.port}") as channel:
        listed = await reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        public = await reflect(
            channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol="videogen.v1.JobService")
        )
        hidden = await reflect(
            channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol="videogen.v1.JobLifecycleService")
        )

    names = {service.name for service in listed.list_services_response.service}
    assert {"videogen.v1.JobService", "videogen.v1.ProviderService", "grpc.health.v1.Health"} <= names
    assert names.isdisjoint(INTERNAL)
    assert public.HasField("file_descriptor_response")
    assert hidden.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


async def test_reflection_needs_a_key_in_production(production_server: GrpcApp) -> None:
    from grpc_reflection.v1alpha import reflection_pb2

    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{production_server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await reflect(channel, request)
        listed = await reflect(channel, request, metadata=(("x-api-key", "the-admin-key"),))

    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert listed.HasField("list_services_response")
