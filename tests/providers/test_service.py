"""ProviderService over gRPC with a real PostgreSQL, local and fake OpenAI providers."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from services.core.generators.base import ProviderError
from services.core.generators.capabilities import VideoRequest
from services.core.generators.registry import RegistryConfig
from services.core.metrics import start_metrics_server
from services.providers import repository
from services.providers.server import ProvidersServer, start_providers_server
from services.worker.routing import Router, RoutingUnavailable, Unroutable
from tests.support import databases
from tests.support.fake_openai import FakeOpenAI
from tests.support.internal import internal_channel
from tests.support.internal import test_credentials as service_credentials
from tests.support.stack import providers_settings
from tests.support.tcp_proxy import TcpProxy
from videogen.v1 import providers_pb2, providers_pb2_grpc, routing_pb2, routing_pb2_grpc

if TYPE_CHECKING:
    from videogen.v1.providers_pb2_grpc import ProviderServiceAsyncStub
    from videogen.v1.routing_pb2_grpc import ProviderRoutingServiceAsyncStub

KEY = "sk-live-9b8c7d6e5f4a3b2c1d0e"
SORA_SHAPE = {"durations": [4, 8, 12], "aspect_ratios": ["16:9", "9:16"]}
HEALTHY, UNHEALTHY = providers_pb2.PROVIDER_HEALTH_HEALTHY, providers_pb2.PROVIDER_HEALTH_UNHEALTHY


@pytest.fixture
def fakes() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    fast, slow = FakeOpenAI(api_key=KEY).start(), FakeOpenAI(api_key=KEY).start()
    slow.delay = 5
    yield fast, slow
    fast.stop()
    slow.stop()


@pytest.fixture
async def providers(
    own_database_url: str, fakes: tuple[FakeOpenAI, FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ProviderServiceAsyncStub, ProvidersServer]]:
    monkeypatch.setenv("OPENAI_TEST_KEY", KEY)
    # No probe loop: a probe round between a test's ReportOutcome calls and its assertions would
    # undo the health those calls set up (seen in CI: `fast` turned healthy again).
    server = await start_providers_server(
        providers_settings(), database_url=own_database_url, address="127.0.0.1:0", registry=registry_of(*fakes),
        probing=False,
    )  # fmt: skip
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield providers_pb2_grpc.ProviderServiceStub(channel), server
    await server.stop(0)


def registry_of(fast: FakeOpenAI, slow: FakeOpenAI) -> RegistryConfig:
    """`local`, and two OpenAI-compatible providers of sora-2: `fast` (dearer) and `slow`."""
    return RegistryConfig.model_validate(
        {
            "providers": [
                {"name": "local", "kind": "local", "models": ["local-pyav-h264-v1"]},
                {"name": "fast", "kind": "openai-videos", "base_url": fast.base_url, "api_key_env": "OPENAI_TEST_KEY",
                 "models": ["sora-2"], "capabilities": {"sora-2": SORA_SHAPE}, "cost_per_request": 0.4},
                {"name": "slow", "kind": "openai-videos", "base_url": slow.base_url, "api_key_env": "OPENAI_TEST_KEY",
                 "models": ["sora-2"], "capabilities": {"sora-2": SORA_SHAPE}, "cost_per_request": 0.2},
            ]
        }
    )  # fmt: skip


Stack = tuple["ProviderServiceAsyncStub", ProvidersServer]


@pytest.fixture
async def routing(providers: Stack) -> AsyncIterator[ProviderRoutingServiceAsyncStub]:
    """The workers' ProviderRoutingService of the same server, with the service credential."""
    async with internal_channel(f"127.0.0.1:{providers[1].port}") as channel:
        yield routing_pb2_grpc.ProviderRoutingServiceStub(channel)


async def test_status_lists_every_configured_provider(providers: Stack) -> None:
    stub, _ = providers

    reply = await stub.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())

    by_name = {p.provider: p for p in reply.providers}
    assert list(by_name) == ["local", "fast", "slow"]
    assert (by_name["fast"].kind, list(by_name["fast"].models), by_name["fast"].cost_per_request) == (
        "openai-compatible",
        ["sora-2"],
        0.4,
    )


async def test_test_provider_of_an_unknown_provider_is_not_found(providers: Stack) -> None:
    stub, _ = providers

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.TestProvider(providers_pb2.TestProviderRequest(provider="nope"))

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_test_provider_answers_within_its_timeout_against_a_slow_server(providers: Stack) -> None:
    stub, _ = providers
    began = time.monotonic()

    reply = await stub.TestProvider(providers_pb2.TestProviderRequest(provider="slow", timeout_seconds=1))

    assert time.monotonic() - began < 2
    assert (reply.success, reply.provider) == (False, "slow")
    assert "1s" in reply.error


async def test_test_provider_probes_and_records_success(providers: Stack) -> None:
    stub, _ = providers

    reply = await stub.TestProvider(providers_pb2.TestProviderRequest(provider="fast", timeout_seconds=5))
    status = await stub.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())

    assert (reply.success, reply.status, reply.error) == (True, HEALTHY, "")
    fast = next(p for p in status.providers if p.provider == "fast")
    assert fast.HasField("last_checked_at")
    assert fast.avg_response_time_ms == pytest.approx(reply.response_time_ms, rel=0.5)


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [({"provider": "BAD NAME"}, "provider"), ({"provider": "fast", "timeout_seconds": 0.5}, "timeout_seconds"),
     ({"provider": "fast", "timeout_seconds": 301}, "timeout_seconds")],
)  # fmt: skip
async def test_bad_test_requests_are_invalid(providers: Stack, request_fields: dict[str, Any], field: str) -> None:
    stub, _ = providers

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.TestProvider(providers_pb2.TestProviderRequest(**request_fields))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(field)


async def test_selection_follows_model_cost_and_health(routing: ProviderRoutingServiceAsyncStub) -> None:

    any_model = await routing.SelectProvider(routing_pb2.SelectProviderRequest(job_id="j"))
    sora = await routing.SelectProvider(routing_pb2.SelectProviderRequest(job_id="j", requested_model="sora-2"))
    sora_next = await routing.SelectProvider(
        routing_pb2.SelectProviderRequest(job_id="j", requested_model="sora-2", exclude=["slow"])
    )

    assert (any_model.provider, any_model.model) == ("local", "local-pyav-h264-v1")
    assert (sora.provider, sora.model) == ("slow", "sora-2")
    assert sora_next.provider == "fast"


async def test_a_named_provider_is_unknown_or_refused_when_its_circuit_is_open(
    routing: ProviderRoutingServiceAsyncStub,
) -> None:
    for _ in range(2):
        await routing.ReportOutcome(routing_pb2.ReportOutcomeRequest(provider="fast", success=False, error="HTTP 500"))

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await routing.SelectProvider(routing_pb2.SelectProviderRequest(job_id="j", requested_provider="ghost"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await routing.SelectProvider(routing_pb2.SelectProviderRequest(job_id="j", requested_provider="fast"))

    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "unhealthy" in (refused.value.details() or "")


async def test_the_status_shows_each_circuit_and_when_an_open_one_turns_half_open(
    providers: Stack, routing: ProviderRoutingServiceAsyncStub
) -> None:
    stub, _ = providers
    for _ in range(2):  # providers_settings: unhealthy after 2, a cool-down of 2 s
        await routing.ReportOutcome(_failure("fast"))
    began = time.time()

    async def status() -> dict[str, providers_pb2.ProviderStatus]:
        reply = await stub.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())
        return {p.provider: p for p in reply.providers}

    tripped = await status()
    await asyncio.sleep(max(0.0, tripped["fast"].circuit_open_until.ToDatetime(UTC).timestamp() - time.time()) + 0.1)
    waited = await status()
    await routing.ReportOutcome(routing_pb2.ReportOutcomeRequest(provider="fast", success=True, latency_ms=5))
    healed = await status()

    open_, closed = providers_pb2.CIRCUIT_STATE_OPEN, providers_pb2.CIRCUIT_STATE_CLOSED
    assert (tripped["fast"].circuit, tripped["slow"].circuit) == (open_, closed)
    assert not tripped["slow"].HasField("circuit_open_until")
    assert tripped["fast"].circuit_open_until.ToDatetime(UTC).timestamp() == pytest.approx(began + 2, abs=1)
    assert waited["fast"].circuit == providers_pb2.CIRCUIT_STATE_HALF_OPEN
    assert (healed["fast"].circuit, healed["fast"].HasField("circuit_open_until")) == (closed, False)


def _failure(provider: str) -> routing_pb2.ReportOutcomeRequest:
    return routing_pb2.ReportOutcomeRequest(provider=provider, success=False, error="HTTP 500")


async def test_a_sync_applies_its_outcomes_in_order_and_answers_every_providers_health(
    routing: ProviderRoutingServiceAsyncStub,
) -> None:
    success = routing_pb2.ReportOutcomeRequest(provider="slow", success=True, latency_ms=120)

    reply = await routing.SyncRouting(
        routing_pb2.SyncRoutingRequest(outcomes=[_failure("fast"), success, _failure("fast")])
    )

    table = {row.provider: row for row in reply.providers}
    assert list(table) == ["local", "fast", "slow"]
    assert (table["fast"].status, table["fast"].consecutive_failures, table["fast"].last_error) == (
        UNHEALTHY,
        2,
        "HTTP 500",
    )
    # Open for the cool-down (2 s in these settings), counted from the answer.
    assert 0 < table["fast"].circuit_open_seconds <= 2
    assert (table["slow"].status, table["slow"].avg_response_time_ms, table["slow"].circuit_open_seconds) == (
        HEALTHY,
        120,
        0,
    )
    empty = await routing.SyncRouting(routing_pb2.SyncRoutingRequest())
    assert [row.provider for row in empty.providers] == ["local", "fast", "slow"]


async def test_a_sync_writes_each_provider_once_and_logs_every_change_of_status(
    routing: ProviderRoutingServiceAsyncStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    saved: list[str] = []
    real_save = repository.save_state

    async def counted(session: Any, provider: str, state: Any) -> None:
        saved.append(provider)
        await real_save(session, provider, state)

    monkeypatch.setattr(repository, "save_state", counted)
    success = routing_pb2.ReportOutcomeRequest(provider="slow", success=True, latency_ms=80)
    # fast: failures open its circuit, a success then closes it, all in one sync.
    outcomes = [_failure("fast"), success, _failure("fast"), success, _failure("fast"), success]
    fast_success = routing_pb2.ReportOutcomeRequest(provider="fast", success=True, latency_ms=10)

    with capture_logs() as logs:
        reply = await routing.SyncRouting(routing_pb2.SyncRoutingRequest(outcomes=[*outcomes, fast_success]))

    assert sorted(saved) == ["fast", "slow"]
    changes = [(e["before"], e["after"]) for e in logs if e["event"] == "provider.status_changed"]
    assert [tuple(str(s) for s in change) for change in changes] == [
        ("healthy", "degraded"),
        ("degraded", "unhealthy"),
        ("unhealthy", "healthy"),
    ]
    table = {row.provider: row for row in reply.providers}
    assert (table["fast"].status, table["fast"].consecutive_failures) == (HEALTHY, 0)


@pytest.mark.parametrize(
    ("outcome", "field"),
    [({"provider": "ghost", "success": True}, "provider"), ({"provider": "BAD NAME"}, "provider"),
     ({"provider": "slow", "success": True, "latency_ms": -1}, "latency_ms"),
     ({"provider": "slow", "success": True, "latency_ms": float("nan")}, "latency_ms")],
)  # fmt: skip
async def test_a_sync_with_a_bad_outcome_is_invalid_and_applies_none(
    providers: Stack, routing: ProviderRoutingServiceAsyncStub, outcome: dict[str, Any], field: str
) -> None:
    bad = routing_pb2.ReportOutcomeRequest(**outcome)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await routing.SyncRouting(routing_pb2.SyncRoutingRequest(outcomes=[_failure("fast"), bad]))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"outcomes[1].{field}")
    status = await providers[0].GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())
    assert next(p for p in status.providers if p.provider == "fast").consecutive_failures == 0


async def test_a_sync_of_more_than_a_thousand_outcomes_is_invalid(routing: ProviderRoutingServiceAsyncStub) -> None:
    outcomes = [routing_pb2.ReportOutcomeRequest(provider="slow", success=True)] * 1001

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await routing.SyncRouting(routing_pb2.SyncRoutingRequest(outcomes=outcomes))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith("outcomes")


async def test_rate_limited_outcomes_do_not_count_as_failures(
    providers: Stack, routing: ProviderRoutingServiceAsyncStub
) -> None:
    stub, _ = providers

    for _ in range(5):
        reply = await routing.ReportOutcome(
            routing_pb2.ReportOutcomeRequest(provider="fast", success=False, rate_limited=True, error="429")
        )

    assert reply.status == HEALTHY
    status = await stub.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())
    assert next(p for p in status.providers if p.provider == "fast").consecutive_failures == 0


async def test_no_credential_appears_in_answers_or_logs(
    providers: Stack, fakes: tuple[FakeOpenAI, FakeOpenAI], capsys: pytest.CaptureFixture[str]
) -> None:
    stub, server = providers
    fakes[0].api_key = "sk-a-different-key"  # our key is now wrong: errors mention the failure, never the key
    tested = await stub.TestProvider(providers_pb2.TestProviderRequest(provider="fast", timeout_seconds=5))
    status = await stub.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())
    metrics = start_metrics_server(host="127.0.0.1", port=0)
    try:
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics").read().decode()
        )
    finally:
        metrics.stop()

    assert tested.success is False and "401" in tested.error
    assert KEY not in str(tested) and KEY not in str(status)
    assert KEY not in capsys.readouterr().out
    assert KEY not in body
    assert server.service is not None
    assert KEY not in repr(server.service.config("fast"))


async def test_health_and_reflection_name_the_provider_service(providers: Stack) -> None:
    _, server = providers
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        async with asyncio.timeout(10):
            while (
                await health.Check(health_pb2.HealthCheckRequest(service="videogen.v1.ProviderService"))
            ).status != health_pb2.HealthCheckResponse.SERVING:
                await asyncio.sleep(0.05)

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = [reply async for reply in stub.ServerReflectionInfo(ask())]

    assert "videogen.v1.ProviderService" in {s.name for s in replies[0].list_services_response.service}


async def test_a_lost_database_answers_unavailable(database_url: str) -> None:
    proxy = TcpProxy(databases.upstream_of(database_url))
    await proxy.start()
    url = databases.through_proxy(database_url, proxy.port)
    registry = RegistryConfig.model_validate({"providers": [{"name": "local", "kind": "local"}]})
    server = await start_providers_server(
        providers_settings(), database_url=url, address="127.0.0.1:0", registry=registry, probing=False
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = providers_pb2_grpc.ProviderServiceStub(channel)
            await stub.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest(), timeout=10)
            await proxy.cut()

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest(), timeout=10)

        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)
        await proxy.cut()


# The worker's router (services/worker/routing.py) against this service.

SYNCS = {"grpc_service": "videogen.v1.ProviderRoutingService", "grpc_method": "SyncRouting"}
SORA = VideoRequest(duration_seconds=4)


def syncs() -> float:
    """SyncRouting calls this process's servers started."""
    return REGISTRY.get_sample_value("grpc_server_started_total", SYNCS) or 0.0


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def worker_router(port: int, fakes: tuple[FakeOpenAI, FakeOpenAI], clock: Clock, *, patience: float = 0) -> Router:
    # Reconnects soon after an outage the test ends (gRPC's own backoff would reach seconds).
    backoff = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 300)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=backoff)
    return Router(
        routing_pb2_grpc.ProviderRoutingServiceStub(channel),
        registry=registry_of(*fakes),
        timeout=2,
        credentials=service_credentials(),
        patience=patience,
        ttl=1.0,
        clock=clock,
        sleep=lambda _: None,
    )


async def test_the_worker_routes_from_one_sync_per_ttl_as_the_service_would(
    providers: Stack, fakes: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    clock = Clock()
    router = worker_router(providers[1].port, fakes, clock)
    before = syncs()

    def select(**fields: Any) -> str:
        fields = {"requested": None, "model": "", "exclude": [], "video": SORA} | fields
        return router.select("j", **fields).provider

    picks = await asyncio.to_thread(
        lambda: [select(), select(model="sora-2"), select(model="sora-2", exclude=["slow"])]
    )
    assert picks == ["local", "slow", "fast"]
    assert syncs() - before == 1  # three picks, one sync: the table lasts its TTL
    clock.now = 1.5
    await asyncio.to_thread(select)
    assert syncs() - before == 2
    with pytest.raises(Unroutable, match="'ghost' is not configured"):
        await asyncio.to_thread(select, requested="ghost")
    with pytest.raises(Unroutable, match="cannot make"):
        await asyncio.to_thread(select, requested="fast", video=VideoRequest(duration_seconds=30))


async def test_successes_ride_the_next_sync_and_a_failure_is_told_at_once(
    providers: Stack, fakes: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    router = worker_router(providers[1].port, fakes, Clock())
    pick: dict[str, Any] = {"requested": "fast", "model": "", "exclude": [], "video": SORA}
    assert (await asyncio.to_thread(router.select, "j", **pick)).provider == "fast"
    before = syncs()

    for latency in (100, 100, 100):  # never waits for the service: the flusher sends them
        router.report("slow", error=None, latency_ms=latency)
    async with asyncio.timeout(10):
        while (await health(providers, "slow")).avg_response_time_ms != 100:
            await asyncio.sleep(0.05)
    assert 1 <= syncs() - before <= 2  # three outcomes, one sync (two if the flusher was slow)

    for _ in range(2):  # a failure is sent before report() returns, and the table follows
        await asyncio.to_thread(router.report, "fast", error=ProviderError("HTTP 500"), latency_ms=40)
    with pytest.raises(Unroutable, match="unhealthy"):
        await asyncio.to_thread(router.select, "j", **pick)
    assert (await health(providers, "fast")).consecutive_failures == 2
    with pytest.raises(RoutingUnavailable):  # `fast` is open, `slow` excluded: none for now
        await asyncio.to_thread(
            router.select, "j", **(pick | {"requested": None, "model": "sora-2", "exclude": ["slow"]})
        )


async def test_a_no_from_a_table_a_ttl_old_is_asked_again_of_a_fresh_one(
    providers: Stack, routing: ProviderRoutingServiceAsyncStub, fakes: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    router = worker_router(providers[1].port, fakes, Clock())
    pick: dict[str, Any] = {"requested": "fast", "model": "", "exclude": [], "video": SORA}
    await routing.SyncRouting(routing_pb2.SyncRoutingRequest(outcomes=[_failure("fast"), _failure("fast")]))
    with pytest.raises(Unroutable, match="unhealthy"):
        await asyncio.to_thread(router.select, "j", **pick)

    # Healed elsewhere (a probe, another worker) within the table's TTL: the job is not failed.
    await routing.SyncRouting(
        routing_pb2.SyncRoutingRequest(outcomes=[routing_pb2.ReportOutcomeRequest(provider="fast", success=True)])
    )

    assert (await asyncio.to_thread(router.select, "j", **pick)).provider == "fast"


async def health(providers: Stack, name: str) -> providers_pb2.ProviderStatus:
    status = await providers[0].GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())
    return next(p for p in status.providers if p.provider == name)


async def test_a_stale_table_serves_through_a_short_outage_and_then_no_longer(
    providers: Stack, fakes: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    port = providers[1].port
    proxy = TcpProxy(lambda: asyncio.open_connection("127.0.0.1", port))
    await proxy.start()
    clock = Clock()
    router = worker_router(proxy.port, fakes, clock)
    pick: dict[str, Any] = {"requested": None, "model": "sora-2", "exclude": [], "video": SORA}
    try:
        assert (await asyncio.to_thread(router.select, "j", **pick)).provider == "slow"
        await proxy.cut()

        clock.now = 30  # past the TTL: the sync fails, the table of 30 s ago still routes
        with capture_logs() as logs:
            assert (await asyncio.to_thread(router.select, "j", **pick)).provider == "slow"
        assert [line["event"] for line in logs] == ["routing.table_stale"]
        router.report("slow", error=None, latency_ms=5)  # kept for a later sync

        clock.now = 61  # too old to route from: asked patiently (no patience here), then given up
        with pytest.raises(RoutingUnavailable, match="did not answer"):
            await asyncio.to_thread(router.select, "j", **pick)

        await proxy.start()
        async with asyncio.timeout(10):
            while True:
                try:
                    assert (await asyncio.to_thread(router.select, "j", **pick)).provider == "slow"
                    break
                except RoutingUnavailable:  # the channel has not reconnected yet
                    await asyncio.sleep(0.1)
        status = await providers[0].GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())
        slow = next(p for p in status.providers if p.provider == "slow")
        assert slow.avg_response_time_ms == 5  # the outcome of the outage landed with the first sync after it
    finally:
        await proxy.cut()
