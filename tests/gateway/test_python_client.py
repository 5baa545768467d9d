"""clients/python (videogen-client): the sync and async clients and webhook verification against
a real stack behind Envoy, and the `videogen` command, installed by pip, against `make run`."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from videogen_client import (
    AsyncClient,
    Client,
    Invalid,
    JobEvent,
    JobFailed,
    NotFound,
    WebhookVerificationError,
    verify_webhook,
)

from tests.gateway.conftest import Gateway, GatewayFactory
from tests.support.deliveries import SECRET
from tests.support.factories import unique_user
from tests.support.local_run import local_run
from tests.support.processes import ROOT
from tests.support.webhook_receiver import webhook_receiver

TINY = {"durationSeconds": 1, "width": 64, "height": 64, "fps": 4}
QUICK_WEBHOOKS = {"webhook_secret": SECRET, "webhook_poll_interval": 0.1}


@pytest.fixture(scope="module")
async def module_gateway(start_module_gateway: GatewayFactory) -> Gateway:
    return await start_module_gateway(stack_options={"jobs": QUICK_WEBHOOKS})


def edge(gateway: Gateway) -> str:
    return f"http://127.0.0.1:{gateway.edge_port}"


def is_mp4(path: Path) -> bool:
    return path.read_bytes()[4:8] == b"ftyp"


async def test_the_sync_client_creates_follows_lists_and_downloads(gateway: Gateway, tmp_path: Path) -> None:
    user = unique_user()
    events: list[JobEvent] = []

    def session() -> tuple[object, ...]:
        # Blocking calls: in a thread, so that the stack in this loop keeps serving.
        with Client(edge(gateway)) as client:
            job = client.create_job("a red fox", user_id=user, metadata=TINY)
            done = client.wait(job.id, on_event=events.append, timeout=60)
            saved = client.download(done, tmp_path / "fox.mp4")
            page = client.list_jobs(user_id=user, take=1)
            everything = list(client.iter_jobs(user_id=user, take=1))
            tried = client.attempts(job.id)
            return job, done, saved, page, everything, client.get_job(job.id), client.providers(), tried

    job, done, saved, page, everything, again, providers, tried = await asyncio.to_thread(session)

    assert (done.status, done.progress_percent, done.result is not None) == ("completed", 100, True)  # type: ignore[attr-defined]
    types = [event.type for event in events if isinstance(event, JobEvent)]
    assert types[0] in ("job.queued", "job.processing") and types[-1] == "job.completed"
    assert isinstance(saved, Path) and is_mp4(saved) and saved.stat().st_size == done.result.size_bytes  # type: ignore[attr-defined]
    assert [j.id for j in page.jobs] == [job.id] and page.total == 1 and page.next_cursor is None  # type: ignore[attr-defined]
    assert [j.id for j in everything] == [job.id]  # type: ignore[attr-defined]
    assert again.id == job.id and again.final  # type: ignore[attr-defined]
    assert "local" in {p.provider for p in providers}  # type: ignore[attr-defined]
    assert {p.circuit for p in providers} == {"closed"}  # type: ignore[attr-defined]
    assert [(a.attempt, a.outcome, a.provider) for a in tried] == [(1, "completed", "local")]  # type: ignore[attr-defined]


async def test_the_async_client_does_the_same_in_the_loop(gateway: Gateway, tmp_path: Path) -> None:
    async with AsyncClient(edge(gateway)) as client:
        job = await client.create_job("a blue whale", user_id=unique_user(), metadata=TINY)
        stages = [event.job.status async for event in client.stream(job.id)]
        done = await client.wait(job.id, timeout=60)
        saved = await client.download(done.id, tmp_path / "whale.mp4")
        tried = await client.attempts(done.id)
        cancelled_or_deleted = await client.cancel_job(done.id)

        with pytest.raises(NotFound):
            await client.get_job(done.id)

    assert stages[-1] == "completed" and done.status == "completed"
    assert is_mp4(saved)
    assert [(a.outcome, a.ended_at is not None) for a in tried] == [("completed", True)]
    assert cancelled_or_deleted is None  # a finished job is deleted with its video


async def test_errors_are_exceptions_by_kind_and_a_create_asked_again_is_one_job(gateway: Gateway) -> None:
    async with AsyncClient(edge(gateway)) as client:
        with pytest.raises(NotFound):
            await client.get_job("cnotthereatall0000000000c")
        with pytest.raises(Invalid) as invalid:
            await client.create_job("", user_id=unique_user())
        user = unique_user()
        first = await client.create_job("an owl", user_id=user, metadata=TINY, idempotency_key="client-key-1")
        second = await client.create_job("an owl", user_id=user, metadata=TINY, idempotency_key="client-key-1")
        failed = await client.create_job("a storm", user_id=user, metadata={"provider": "ghost"})
        with pytest.raises(JobFailed) as refused:
            await client.wait(failed.id, timeout=60)

    assert invalid.value.status == 422 and "prompt" in str(invalid.value.detail)
    assert first.id == second.id
    assert refused.value.job.status == "failed" and "ghost" in (refused.value.job.error_message or "")


async def test_verify_webhook_accepts_a_real_delivery_and_nothing_altered(gateway: Gateway) -> None:
    with webhook_receiver(SECRET) as receiver:
        async with AsyncClient(edge(gateway)) as client:
            job = await client.create_job("a kite", user_id=unique_user(), metadata=TINY, webhook_url=receiver.url)
            await client.wait(job.id, timeout=60)
        async with asyncio.timeout(30):
            while not any(r.event_type == "job.completed" for r in receiver.accepted):
                await asyncio.sleep(0.1)
    delivery = next(r for r in receiver.accepted if r.event_type == "job.completed")

    kind, delivered = verify_webhook(delivery.body, delivery.headers, SECRET, now=delivery.at)

    assert (kind, delivered.id, delivered.status) == ("job.completed", job.id, "completed")
    for body, headers, secret, now in [
        (delivery.body.replace(b"completed", b"cancelled"), delivery.headers, SECRET, delivery.at),
        (delivery.body, delivery.headers, "whsec_" + "QUJD" * 11, delivery.at),
        (delivery.body, delivery.headers, SECRET, delivery.at + 600),
        (delivery.body, {k: v for k, v in delivery.headers.items() if k.lower() != "webhook-id"}, SECRET, delivery.at),
    ]:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(body, headers, secret, now=now)


# The gRPC extra, through the same edge: create, watch to the end, read the providers.
GRPC_SESSION = """
import sys
from videogen_client.grpc_client import GrpcClient
from videogen.v1 import jobs_pb2

with GrpcClient(sys.argv[1]) as client:
    job = client.create_job("a heron", user_id="grpc-user", metadata={"durationSeconds": 1, "width": 64, "height": 64})
    last = [event for event in client.watch(job.id)][-1]
    print(last.type, jobs_pb2.JobStatus.Name(client.get_job(job.id).status))
    print(" ".join(p.provider for p in client.providers().providers))
"""


async def run(*command: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *map(str, command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_videogen_installed_by_pip_submits_waits_with_a_progress_bar_and_saves_the_mp4(
    own_database_url: str, redis_url: str, tmp_path: Path
) -> None:
    venv, source, protos = tmp_path / "venv", tmp_path / "videogen-client", tmp_path / "videogen-protos"
    # pip builds in the tree it is given: copies, so that nothing is left in the checkout.
    shutil.copytree(ROOT / "clients" / "python", source)
    shutil.copytree(ROOT / "gen", protos, ignore=shutil.ignore_patterns("__pycache__"))
    assert (await run(sys.executable, "-m", "venv", venv))[0] == 0
    code, _, err = await run(venv / "bin" / "python", "-m", "pip", "install", "-q", protos, f"{source}[grpc]")
    assert code == 0, err
    videogen = venv / "bin" / "videogen"
    with local_run(own_database_url, redis_url, name="cli") as system:
        system.process.wait_event("run.ready", timeout=120)
        env = {**os.environ, "VIDEOGEN_URL": f"http://127.0.0.1:{system.port('EDGE_PORT')}", "COLUMNS": "100"}
        env.pop("VIDEOGEN_API_KEY", None)
        video = tmp_path / "fox.mp4"
        metadata = '{"width": 64, "height": 64, "fps": 4}'

        code, out, err = await run(
            videogen, "submit", "--wait", "a red fox", "--duration", "1", "--metadata", metadata, "-o", video, env=env
        )
        listed = await run(videogen, "list", "--status", "completed", env=env)
        providers = await run(videogen, "providers", env=env)
        missing = await run(videogen, "get", "cnotthereatall0000000000d", env=env)
        over_grpc = await run(venv / "bin" / "python", "-c", GRPC_SESSION, f"127.0.0.1:{system.port('EDGE_PORT')}")

    assert code == 0, err
    assert "completed" in err and "100%" in err, err  # the progress bar's last state
    assert out.strip() == str(video) and is_mp4(video)
    assert listed[0] == 0 and "1 jobs" in listed[1]
    assert providers[0] == 0 and "local" in providers[1] and "closed" in providers[1]
    assert missing[0] == 1 and "HTTP 404" in missing[2] and "Traceback" not in missing[2]
    assert over_grpc[0] == 0, over_grpc[2]
    assert over_grpc[1].split() == ["job.completed", "JOB_STATUS_COMPLETED", "local"]


def test_the_client_refuses_a_job_id_that_is_not_one() -> None:
    with Client("http://127.0.0.1:9") as client, pytest.raises(ValueError):
        client.get_job("../api-keys")


def test_a_connection_refused_is_a_clear_error_after_the_retries() -> None:
    with Client("http://127.0.0.1:9", max_retries=1) as client, pytest.raises(Exception) as caught:
        client.providers()

    assert "GET /api/v1/providers/status" in str(caught.value)
    assert not isinstance(caught.value, httpx.HTTPError)
