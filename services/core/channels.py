"""gRPC channels from one service to another: round_robin over every address of a target, keepalive.

A target may name several replicas: `ipv4:127.0.0.1:50051,127.0.0.1:50151` (`make run` with
RUN_REPLICAS) or `dns:///jobs:50051` over a headless Kubernetes Service (every pod's address).
gRPC's default policy, pick_first, would send every call to the first address that answers;
round_robin keeps a connection to each and spreads the calls, and drops a replica whose
connection breaks (a killed process, a closed socket) from the rotation at once. Keepalive pings
find a replica that vanished without closing its connections (a partitioned node).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc

LOAD_BALANCING_POLICY = "round_robin"
SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{LOAD_BALANCING_POLICY: {}}]})
# A ping after this long without traffic, and the connection closed when none comes back within
# KEEPALIVE_TIMEOUT_MS. Servers accept pings this often (grpc_server.py's SERVER_KEEPALIVE_OPTIONS).
KEEPALIVE_TIME_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000
# Servers refuse (GOAWAY too_many_pings) pings closer together than this; below KEEPALIVE_TIME_MS.
MIN_PING_INTERVAL_MS = 10_000
# A server asks its clients (GOAWAY) to open a new connection after this long, so that they
# resolve their `dns:///` target again and a replica started since gets its share of the calls.
# Calls and streams in progress finish on the old connection (no grace limit).
MAX_CONNECTION_AGE_MS = 300_000

ChannelOptions = list[tuple[str, str | int]]


def channel_options(*, max_message_bytes: int | None = None) -> ChannelOptions:
    """The options of every channel to a service of ours."""
    options: ChannelOptions = [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # A restarted service is found again within seconds, not gRPC's default two minutes.
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if max_message_bytes is not None:
        options.append(("grpc.max_receive_message_length", max_message_bytes))
    return options


def server_keepalive_options() -> ChannelOptions:
    """What a server needs to accept the clients' keepalive pings (else GOAWAY too_many_pings),
    and the age at which it sends its clients to a new connection (MAX_CONNECTION_AGE_MS)."""
    return [
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", MIN_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
    ]


def aio_channel(target: str, *, max_message_bytes: int | None = None) -> grpc.aio.Channel:
    """An asyncio channel to a service (it connects lazily and reconnects by itself)."""
    return grpc.aio.insecure_channel(target, options=channel_options(max_message_bytes=max_message_bytes))


def sync_channel(target: str, *, max_message_bytes: int | None = None) -> grpc.Channel:
    """A blocking channel to a service, for code that runs outside an event loop (Celery tasks)."""
    return grpc.insecure_channel(target, options=channel_options(max_message_bytes=max_message_bytes))


def loopback_target(ports: Sequence[int], host: str = "127.0.0.1") -> str:
    """The target of the replicas listening on these ports of host: `host:port` for one, else
    gRPC's address list `ipv4:host:p1,host:p2` (round_robin spreads calls over it)."""
    if len(ports) == 1:
        return f"{host}:{ports[0]}"
    return "ipv4:" + ",".join(f"{host}:{port}" for port in ports)
