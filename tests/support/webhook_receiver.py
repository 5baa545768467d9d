"""A real HTTP(S) webhook receiver in a thread: checks each delivery with the reference verifier of
Standard Webhooks, fails or stalls on demand."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.core import webhooks


@dataclass(frozen=True)
class Received:
    """One POST as the receiver saw it, and what it answered."""

    headers: dict[str, str]
    body: bytes
    signed: bool
    status: int
    # When the request had been read (epoch seconds).
    at: float = 0.0

    @property
    def host(self) -> str:
        """The Host header."""
        return self.headers.get("host", "")

    @property
    def event_id(self) -> str:
        """The webhook-id header."""
        return self.headers.get(webhooks.ID_HEADER, "")

    @property
    def user_agent(self) -> str:
        """The User-Agent header."""
        return self.headers.get("user-agent", "")

    @property
    def envelope(self) -> dict[str, Any]:
        """The body: {"type", "timestamp", "data"}."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event_at(self) -> float:
        """The body's timestamp (when the event happened), in epoch seconds."""
        return datetime.fromisoformat(str(self.envelope["timestamp"])).timestamp()

    @property
    def latency(self) -> float:
        """Seconds from the event to this POST's arrival."""
        return self.at - self.event_at

    @property
    def event_type(self) -> str:
        """The body's type."""
        return str(self.envelope["type"])

    @property
    def job(self) -> dict[str, Any]:
        """The body's data: the job's JSON."""
        data: dict[str, Any] = self.envelope["data"]
        return data

    def verifies_with(self, secret: str) -> bool:
        """Whether the reference verifier accepts this request with secret (a whsec_ string)."""
        try:
            Webhook(secret).verify(self.body, self.headers)
        except WebhookVerificationError:
            return False
        return True


class WebhookReceiver:
    """Answers 500 to the first fail_first POSTs, to all while failing is set and to those the
    verifier refuses, after delay seconds each; otherwise 204. Every POST is recorded, with whether
    it verifies with secret. With tls, it speaks HTTPS and records the server names clients ask for."""

    def __init__(
        self,
        secret: str,
        *,
        fail_first: int = 0,
        failing: bool = False,
        delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.failing = failing
        self.delay = delay
        self.received: list[Received] = []
        # Set while a POST is being answered (the receiver holds it, sleeping delay seconds).
        self.holding = threading.Event()
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        # The TLS server names (SNI) of the connections made to it.
        self.server_names: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda _socket, name, _context: self.server_names.append(name)
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on, on 127.0.0.1."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Where to send webhooks (with a query token, which must never reach a log)."""
        return self.url_at("127.0.0.1")

    def url_at(self, host: str) -> str:
        """The receiver's URL with another host name (one that a test's resolver maps to it)."""
        return f"{self.scheme}://{host}:{self.port}/hooks/videogen?token=rcv-secret-token"

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        """Reads, verifies and answers one POST."""
        body = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        headers = {name.lower(): value for name, value in request.headers.items()}
        received = Received(headers=headers, body=body, signed=False, status=0, at=time.time())
        signed = received.verifies_with(self.secret)
        self.holding.set()
        time.sleep(self.delay)
        with self._changed:
            fail = self.failing or self.fail_first > 0
            self.fail_first = max(0, self.fail_first - 1)
        status = 500 if fail or not signed else 204
        try:
            request.send_response(status)
            request.send_header("Content-Length", "0")
            request.end_headers()
        finally:
            with self._changed:
                self.received.append(dataclasses.replace(received, signed=signed, status=status))
                self._changed.notify_all()

    @property
    def accepted(self) -> list[Received]:
        """The POSTs answered 2xx, in order."""
        with self._changed:
            return [r for r in self.received if r.status < 300]

    async def wait_until(self, check: Callable[[WebhookReceiver], bool], timeout: float = 20) -> None:
        """Waits (without blocking the loop) until check(self) holds after some POST."""

        def wait() -> bool:
            with self._changed:
                return self._changed.wait_for(lambda: check(self), timeout)

        if not await asyncio.to_thread(wait):
            raise AssertionError(f"receiver: condition not met within {timeout}s; received {self.received}")

    async def wait_accepted(self, count: int, timeout: float = 20) -> list[Received]:
        """Waits until count POSTs were accepted; answers them."""
        await self.wait_until(lambda receiver: len(receiver.accepted) >= count, timeout)
        return self.accepted


@contextmanager
def webhook_receiver(secret: str, **behaviour: Any) -> Iterator[WebhookReceiver]:
    """A receiver serving for the duration of the block."""
    receiver = WebhookReceiver(secret, **behaviour)
    receiver._thread.start()
    try:
        yield receiver
    finally:
        receiver._server.shutdown()
        receiver._server.server_close()


class Blackhole:
    """A receiver that never answers: it accepts every connection on 127.0.0.1 and then holds it,
    reading nothing, until it is closed (a hung server, a firewall that lets SYNs through)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on, on 127.0.0.1."""
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """Where to send webhooks that will never be answered."""
        return f"http://127.0.0.1:{self.port}/hooks/never"

    @property
    def connections(self) -> int:
        """How many connections it has taken so far."""
        with self._lock:
            return len(self._held)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self._held.append(connection)

    def close(self) -> None:
        """Stops listening and drops every connection it held."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() alone does not)
        self._listener.close()
        self._thread.join(5)
        with self._lock:
            for connection in self._held:
                connection.close()


@contextmanager
def blackhole() -> Iterator[Blackhole]:
    """A receiver that never answers, for the duration of the block."""
    hole = Blackhole()
    hole._thread.start()
    try:
        yield hole
    finally:
        hole.close()
