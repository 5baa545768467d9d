"""Fixtures of the jobs service's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.core.egress import Resolver, resolve
from services.jobs.server import JobsServer, start_jobs_server
from tests.conftest import jobs_settings, wait_serving
from tests.support.deliveries import QUICK, Service, ServiceFactory
from videogen.v1 import jobs_pb2_grpc


@pytest.fixture
async def start_service(own_database_url: str) -> AsyncIterator[ServiceFactory]:
    """Starts jobs services on a fresh database with the QUICK webhook settings, overridden by
    keyword, resolving webhook hosts with `resolver` (the system's by default)."""
    started: list[tuple[JobsServer, grpc.aio.Channel]] = []

    async def start(*, resolver: Resolver = resolve, **overrides: Any) -> Service:
        settings = jobs_settings(**{**QUICK, **overrides})
        server = await start_jobs_server(
            settings, database_url=own_database_url, address="127.0.0.1:0", resolver=resolver
        )
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        await wait_serving(channel)
        started.append((server, channel))
        return Service(jobs_pb2_grpc.JobServiceStub(channel), server)

    yield start
    for server, channel in started:
        await channel.close(None)
        await server.stop(0)
