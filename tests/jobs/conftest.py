"""Fixtures of the jobs service's tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from services.core.egress import Resolver, resolve
from services.jobs.server import JobsServer, start_jobs_server
from tests.conftest import jobs_settings, wait_serving
from tests.support.deliveries import QUICK, Service, ServiceFactory
from tests.support.internal import jobs_clients


@pytest.fixture
async def start_service(own_database_url: str) -> AsyncIterator[ServiceFactory]:
    """Starts jobs services on a fresh database with the QUICK webhook settings, overridden by
    keyword, resolving webhook hosts with `resolver` (the system's by default)."""
    started: list[JobsServer] = []
    async with contextlib.AsyncExitStack() as opened:

        async def start(*, resolver: Resolver = resolve, **overrides: Any) -> Service:
            settings = jobs_settings(**{**QUICK, **overrides})
            server = await start_jobs_server(
                settings, database_url=own_database_url, address="127.0.0.1:0", resolver=resolver
            )
            started.append(server)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                await wait_serving(channel)
            clients = await opened.enter_async_context(
                jobs_clients(server.port, secret_key=settings.secret_key.get_secret_value())
            )
            return Service(clients.jobs, clients.lifecycle, server)

        yield start
    for server in started:
        await server.stop(0)
