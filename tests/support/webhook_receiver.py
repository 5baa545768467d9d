"""A real HTTP webhook receiver in a thread: checks each signature, fails or stalls on demand."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.core import webhooks


@dataclass(frozen=True)
class Received:
    """One POST as the receiver saw it, and what it answered."""

    event_id: str
    event_type: str
    body: bytes
    signed: bool
    status: int
    user_agent: str

    @property
    def job(self) -> dict[str, Any]:
        """The body: the job's JSON."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class WebhookReceiver:
    """Answers 500 to the first fail_first POSTs and to all while failing is set, after delay
    seconds each; otherwise 204. Every POST is recorded, with whether its signature verifies."""

    def __init__(self, secret: str, *, fail_first: int = 0, failing: bool = False, delay: float = 0.0) -> None:
        self.secret = secret.encode()
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
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where to send webhooks (with a query token, which must never reach a log)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/videogen?token=rcv-secret-token"

    def answer(self, request: BaseHTTPRequestHandler) -> None:
        """Reads, verifies and answers one POST."""
        body = request.rfile.read(int(request.headers.get("Content-Length", "0")))
        signed = webhooks.verify(
            self.secret,
            timestamp=request.headers.get(webhooks.TIMESTAMP_HEADER, ""),
            body=body,
            header=request.headers.get(webhooks.SIGNATURE_HEADER, ""),
            now=time.time(),
        )
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
                self.received.append(
                    Received(
                        event_id=request.headers.get(webhooks.ID_HEADER, ""),
                        event_type=request.headers.get(webhooks.EVENT_HEADER, ""),
                        body=body,
                        signed=signed,
                        status=status,
                        user_agent=request.headers.get("User-Agent", ""),
                    )
                )
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
