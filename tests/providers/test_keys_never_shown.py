"""No provider key, of any kind, in the providers service's answers, metrics or logs: every kind's
probe fails against a fake that wants another key, and its failure is told without ours."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest

from services.core.generators.registry import RegistryConfig
from services.core.metrics import start_metrics_server
from services.providers.server import start_providers_server
from tests.support.fake_comfyui import FakeComfyUI
from tests.support.fake_fal import FakeFal
from tests.support.fake_luma import FakeLuma
from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_provider import FakeProvider
from tests.support.fake_replicate import FakeReplicate
from tests.support.fake_runway import FakeRunway
from tests.support.processes import ROOT
from tests.support.stack import providers_settings
from videogen.v1 import providers_pb2, providers_pb2_grpc

if TYPE_CHECKING:
    from videogen.v1.providers_pb2_grpc import ProviderServiceAsyncStub

OURS = "sk-ours-5f4e3d2c1b0a99887766"
THEIRS = "the-key-the-fakes-want-0011"
KINDS = ("runway", "luma", "fal", "replicate", "comfyui", "openai-compatible")


@pytest.fixture
def fakes() -> Iterator[dict[str, FakeProvider]]:
    servers: dict[str, FakeProvider] = {
        "runway": FakeRunway(api_key=THEIRS),
        "luma": FakeLuma(api_key=THEIRS),
        "fal": FakeFal(key=THEIRS),
        "replicate": FakeReplicate(key=THEIRS),
        "comfyui": FakeComfyUI(key=THEIRS),
        "openai-compatible": FakeOpenAI(api_key=THEIRS),
    }
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.stop()


def entry(kind: str, server: FakeProvider) -> dict[str, Any]:
    fields: dict[str, Any] = {"name": kind, "kind": kind, "base_url": server.base_url, "api_key_env": "OUR_KEY"}
    if kind == "comfyui":
        fields |= {
            "workflow": str(ROOT / "deploy" / "comfyui" / "wan22_ti2v_5b_t2v.json"),
            "models": ["wan"],
            "capabilities": {"wan": {"min_seconds": 1, "max_seconds": 5}},
        }
    return fields


@pytest.fixture
async def stub(
    own_database_url: str, fakes: dict[str, FakeProvider], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ProviderServiceAsyncStub]:
    monkeypatch.setenv("OUR_KEY", OURS)
    registry = RegistryConfig.model_validate({"providers": [entry(kind, fakes[kind]) for kind in KINDS]})
    server = await start_providers_server(
        providers_settings(), database_url=own_database_url, address="127.0.0.1:0", registry=registry, probing=False
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield providers_pb2_grpc.ProviderServiceStub(channel)
    await server.stop(0)


async def test_no_kind_shows_its_key_in_an_answer_a_metric_or_a_log(
    stub: ProviderServiceAsyncStub, capsys: pytest.CaptureFixture[str]
) -> None:
    tested = [
        await stub.TestProvider(providers_pb2.TestProviderRequest(provider=kind, timeout_seconds=10)) for kind in KINDS
    ]
    status = await stub.GetProvidersStatus(providers_pb2.GetProvidersStatusRequest())
    metrics = start_metrics_server(host="127.0.0.1", port=0)
    try:
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics").read().decode()
        )
    finally:
        metrics.stop()

    assert [(t.provider, t.success) for t in tested] == [(kind, False) for kind in KINDS], "our key is refused"
    assert all(t.error for t in tested)
    for shown in (*(str(t) for t in tested), str(status), body, capsys.readouterr().out):
        assert OURS not in shown
