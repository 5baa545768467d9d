"""No SSRF: webhooks aimed at non-public addresses are refused at creation and at every attempt,
the sender connects to the very address it checked, and lastError tells only coarse categories."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_address
from typing import TYPE_CHECKING

import grpc
import pytest

from services.core import webhooks
from services.core.egress import Egress, IPAddress, Resolver
from services.jobs.webhooks.post import WebhookPoster
from tests.support.deliveries import SECRET, ServiceFactory, all_delivered, wait_deliveries
from tests.support.factories import create_job
from tests.support.tls import make_tls
from tests.support.webhook_receiver import webhook_receiver
from videogen.v1 import webhooks_pb2

if TYPE_CHECKING:
    from videogen.v1.jobs_pb2_grpc import JobServiceAsyncStub

PUBLIC_ADDRESS = "93.184.215.14"
REFUSED_URLS = [
    "http://127.0.0.1/",
    "http://[::1]/",
    "http://localhost/",
    "http://10.0.0.5/",
    "http://169.254.169.254/latest/meta-data",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://127.1:8080/",
    "http://[::ffff:127.0.0.1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "https://[fd00:ec2::254]/",
    "http://100.64.0.1/",
    "http://intranet.test/hook",
    "http://nowhere.test/hook",
]


class ScriptedResolver:
    """Answers names from a table; a name given a list of answers gives the next one each time."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        queue = self.answers[host]
        found = queue.pop(0) if len(queue) > 1 else queue[0]
        return [ip_address(a) for a in found]


async def refused_at_creation(jobs: JobServiceAsyncStub, url: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_job(jobs, webhook_url=url)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, url
    return caught.value.details() or ""


async def test_a_webhook_aimed_at_a_non_public_address_is_invalid_argument_when_private_targets_are_refused(
    start_service: ServiceFactory,
) -> None:
    resolver = ScriptedResolver({"intranet.test": [["10.1.2.3"]], "public.test": [[PUBLIC_ADDRESS]]})
    service = await start_service(webhook_allow_private_targets=False, resolver=resolver)

    for url in REFUSED_URLS:
        assert (await refused_at_creation(service.jobs, url)).startswith("webhook_url:"), url
    created = await create_job(service.jobs, webhook_url="https://public.test/hook", webhook_events=["job.failed"])

    assert created.webhook_url == "https://public.test/hook"
    assert "nowhere.test" in resolver.asked


async def test_a_refusal_names_an_address_but_never_tells_a_private_name_from_an_unknown_one(
    start_service: ServiceFactory,
) -> None:
    resolver = ScriptedResolver({"intranet.test": [["10.1.2.3"]]})
    service = await start_service(webhook_allow_private_targets=False, resolver=resolver)

    literal = await refused_at_creation(service.jobs, "http://169.254.169.254/latest/meta-data")
    private = await refused_at_creation(service.jobs, "http://intranet.test/hook")
    unknown = await refused_at_creation(service.jobs, "http://nowhere.test/hook")

    assert "169.254.169.254 is a cloud metadata address" in literal
    assert private == unknown
    assert "10.1.2.3" not in private


async def test_development_lets_a_webhook_reach_the_local_receiver(start_service: ServiceFactory) -> None:
    service = await start_service()  # APP_ENV development or test: private targets allowed
    with webhook_receiver(SECRET) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url_at("localhost"), webhook_events=["job.queued"])
        await wait_deliveries(service.jobs, job.id, all_delivered)

    assert [r.host for r in receiver.received] == [f"localhost:{receiver.port}"]


async def test_a_name_rebound_to_loopback_after_creation_is_never_connected_to(start_service: ServiceFactory) -> None:
    resolver = ScriptedResolver({"rebind.test": [[PUBLIC_ADDRESS], ["127.0.0.1"]]})
    service = await start_service(webhook_allow_private_targets=False, resolver=resolver)
    with webhook_receiver(SECRET) as receiver:
        job = await create_job(service.jobs, webhook_url=receiver.url_at("rebind.test"), webhook_events=["job.queued"])
        [failed] = await wait_deliveries(service.jobs, job.id, lambda found: len(found) == 1 and found[0].attempts >= 2)
        await asyncio.sleep(0.2)

    assert receiver.received == [], "nothing ever reached 127.0.0.1"
    assert failed.last_error == "forbidden address" and not failed.HasField("last_status_code")
    assert failed.state in (webhooks_pb2.DELIVERY_STATE_PENDING, webhooks_pb2.DELIVERY_STATE_DELIVERING)
    assert resolver.asked.count("rebind.test") >= 3, "checked at creation, then at every attempt"


async def test_last_error_tells_a_refused_connection_as_refused(start_service: ServiceFactory) -> None:
    service = await start_service()
    job = await create_job(service.jobs, webhook_url=f"http://127.0.0.1:{closed_port()}/hook?token=t0ken")

    [failed] = await wait_deliveries(
        service.jobs, job.id, lambda found: bool(found) and found[0].HasField("last_error")
    )

    assert failed.last_error == "refused"


def closed_port() -> int:
    """A port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def hanging_up_server() -> Iterator[int]:
    """A server that accepts connections and closes them at once; answers its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stopping.set()
        listener.close()
        thread.join(5)


def poster(
    resolver: Resolver, *, allow_private: bool = True, timeout: float = 2.0, verify: ssl.SSLContext | bool = True
) -> WebhookPoster:
    rules = Egress(allow_private=allow_private, resolver=resolver)
    return WebhookPoster(rules, timeout=timeout, max_connections=4, verify=verify)


def now() -> int:
    return int(time.time())


async def post(sender: WebhookPoster, url: str) -> tuple[int | None, str | None]:
    body = b'{"type":"job.queued"}'
    headers = webhooks.request_headers(webhooks.parse_secrets(SECRET), event_id="evt_c1", timestamp=now(), body=body)
    try:
        attempt = await sender.post(url, body=body, headers=headers)
    finally:
        await sender.aclose()
    return attempt.status, attempt.error


async def test_each_failure_is_told_as_a_coarse_category_never_an_exception_text() -> None:
    names = ScriptedResolver({"hook.test": [["127.0.0.1"]]})
    with (
        webhook_receiver(SECRET, failing=True) as failing,
        webhook_receiver(SECRET, delay=1.0) as slow,
        hanging_up_server() as hanging,
    ):
        outcomes = [
            await post(poster(names), f"http://hook.test:{closed_port()}/"),
            await post(poster(names), "http://nowhere.test/"),
            await post(poster(names, allow_private=False), "http://hook.test/"),
            await post(poster(names, timeout=0.3), slow.url_at("hook.test")),
            await post(poster(names), f"http://hook.test:{hanging}/"),
            await post(poster(names), failing.url_at("hook.test")),
        ]

    assert outcomes == [
        (None, "refused"),
        (None, "dns"),
        (None, "forbidden address"),
        (None, "timeout"),
        (None, "connection error"),
        (500, "status 500"),
    ]


async def test_https_goes_to_the_checked_address_with_the_host_name_for_host_sni_and_certificate() -> None:
    tls = make_tls("hooks.test")
    names = ScriptedResolver({"hooks.test": [["127.0.0.1"]]})
    with webhook_receiver(SECRET, tls=tls.server) as receiver:
        outcome = await post(poster(names, verify=tls.client), receiver.url_at("hooks.test"))

    assert outcome == (204, None)
    assert receiver.server_names == ["hooks.test"]
    assert [r.host for r in receiver.received] == [f"hooks.test:{receiver.port}"]


async def test_a_certificate_for_another_name_fails_as_tls_and_sends_nothing() -> None:
    tls = make_tls("other.test")
    names = ScriptedResolver({"hooks.test": [["127.0.0.1"]]})
    with webhook_receiver(SECRET, tls=tls.server) as receiver:
        outcome = await post(poster(names, verify=tls.client), receiver.url_at("hooks.test"))

    assert outcome == (None, "tls")
    assert receiver.received == []
