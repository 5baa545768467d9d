"""The shared channel factory: calls spread round-robin over every replica a target names."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from services.core.channels import aio_channel, channel_options, loopback_target

METHOD = "/test.Who/Am"


async def start_named(name: str) -> tuple[grpc.aio.Server, int]:
    """A server whose one method answers its name."""

    async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return name.encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Am": grpc.unary_unary_rpc_method_handler(who, lambda b: b, lambda b: b)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


@pytest.fixture
async def replicas() -> AsyncIterator[list[tuple[grpc.aio.Server, int]]]:
    started = [await start_named(name) for name in ("a", "b")]
    yield started
    for server, _ in started:
        await server.stop(None)


async def answers(channel: grpc.aio.Channel, calls: int) -> Counter[str]:
    """Who answered each of `calls` calls."""
    call = channel.unary_unary(METHOD, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    return Counter([(await call(b"", timeout=5, wait_for_ready=True)).decode() for _ in range(calls)])


def test_every_channel_balances_round_robin_and_keeps_connections_alive() -> None:
    options = dict(channel_options())

    assert json.loads(str(options["grpc.service_config"])) == {"loadBalancingConfig": [{"round_robin": {}}]}
    assert int(options["grpc.keepalive_time_ms"]) > 0 and int(options["grpc.keepalive_timeout_ms"]) > 0


def test_a_target_of_several_ports_is_a_grpc_address_list() -> None:
    assert loopback_target([50051]) == "127.0.0.1:50051"
    assert loopback_target([50051, 50151]) == "ipv4:127.0.0.1:50051,127.0.0.1:50151"


async def connected_to_all(channel: grpc.aio.Channel, names: set[str]) -> None:
    """Calls until every replica has answered once (round_robin connects to each in the background)."""
    seen: set[str] = set()
    async with asyncio.timeout(10):
        while seen != names:
            seen |= set(await answers(channel, 1))


async def test_calls_reach_every_replica_of_the_target(replicas: list[tuple[grpc.aio.Server, int]]) -> None:
    async with aio_channel(loopback_target([port for _, port in replicas])) as channel:
        await connected_to_all(channel, {"a", "b"})

        seen = await answers(channel, 20)

    assert seen == {"a": 10, "b": 10}


async def test_a_stopped_replica_leaves_the_rotation(replicas: list[tuple[grpc.aio.Server, int]]) -> None:
    async with aio_channel(loopback_target([port for _, port in replicas])) as channel:
        await connected_to_all(channel, {"a", "b"})
        await replicas[0][0].stop(None)

        seen = await answers(channel, 10)

    assert seen == {"b": 10}
