"""The shared channel factory: calls spread round-robin over every replica a target names."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from services.core.channels import (
    MAX_CONNECTION_AGE_MS,
    aio_channel,
    channel_options,
    loopback_target,
    server_keepalive_options,
)

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


def test_servers_send_clients_to_a_new_connection_after_a_while() -> None:
    options = dict(server_keepalive_options())

    # Clients then resolve their dns:/// target again and a new replica gets its share.
    assert int(options["grpc.max_connection_age_ms"]) == MAX_CONNECTION_AGE_MS
    assert "grpc.max_connection_age_grace_ms" not in options


async def test_a_stream_outlives_the_connection_age_and_calls_go_on() -> None:
    async def tick(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> AsyncIterator[bytes]:
        for index in range(8):
            await asyncio.sleep(0.2)
            yield str(index).encode()

    async def who(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return b"a"

    handler = grpc.method_handlers_generic_handler(
        "test.Who",
        {
            "Am": grpc.unary_unary_rpc_method_handler(who, lambda b: b, lambda b: b),
            "Tick": grpc.unary_stream_rpc_method_handler(tick, lambda b: b, lambda b: b),
        },
    )
    aged = [(k, 300 if k == "grpc.max_connection_age_ms" else v) for k, v in server_keepalive_options()]
    server = grpc.aio.server(options=aged)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio_channel(f"127.0.0.1:{port}") as channel:
            stream = channel.unary_stream(
                "/test.Who/Tick", request_serializer=lambda b: b, response_deserializer=lambda b: b
            )
            # A watch (WatchJob, an SSE stream) is not cut when its connection gets old.
            ticks = [item async for item in stream(b"", timeout=10)]
            calls = await answers(channel, 5)
    finally:
        await server.stop(None)

    assert ticks == [str(i).encode() for i in range(8)]
    assert calls == {"a": 5}
