"""What one ComfyUI run is doing: the server's WebSocket events for our client id, read into a
fraction done and a stage. The socket only informs; the server's /history decides the end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from services.core.generators.comfyui.workflow import Workflow
from services.core.logging import get_logger

log = get_logger(__name__)
# The websockets library logs the handshake's headers (the key) at DEBUG: its logger never does.
_SOCKET_LOG = logging.getLogger("videogen.comfyui.websocket")
_SOCKET_LOG.setLevel(logging.INFO)
# Binary frames carry preview images; larger ones close the socket, and polling takes over.
MAX_FRAME_BYTES = 32 * 1024 * 1024
# The share of the run before sampling starts and after it ends (loading models, decoding).
STARTED, SAMPLED = 0.05, 0.9
# A socket silent this long may have lost our run (a proxy that keeps dead connections): look at the queue.
QUIET_SECONDS = 30.0
TERMINAL = frozenset({"execution_success", "execution_error", "execution_interrupted"})


class EventStream:
    """The server's /ws for our client id: its JSON events; after a drop, nothing (callers poll)."""

    def __init__(self, connection: ClientConnection | None, provider: str, closing: contextlib.ExitStack) -> None:
        self._connection = connection
        self._provider = provider
        self._closing = closing

    @classmethod
    def open(cls, url: str, *, headers: Mapping[str, str], timeout: float, provider: str) -> EventStream:
        """Connects; a server whose socket does not open is followed by polling alone."""
        closing = contextlib.ExitStack()
        try:
            connecting = connect(
                url,
                additional_headers=dict(headers),
                user_agent_header="videogen",
                open_timeout=max(0.1, timeout),
                close_timeout=1,
                proxy=None,
                max_size=MAX_FRAME_BYTES,
                logger=_SOCKET_LOG,
                legacy=False,
            )
            connection: ClientConnection | None = closing.enter_context(connecting)
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.warning("comfyui.websocket_unavailable", provider=provider, error=type(exc).__name__)
            connection = None
        return cls(connection, provider, closing)

    @property
    def alive(self) -> bool:
        """Whether events still come."""
        return self._connection is not None

    def next(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON event within timeout seconds; None when none came (or the socket is gone,
        in which case it waits out the timeout: callers poll at that pace)."""
        if self._connection is None:
            time.sleep(max(0.0, timeout))
            return None
        try:
            data = self._connection.recv(timeout=max(0.0, timeout))
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            log.warning("comfyui.websocket_dropped", provider=self._provider, code=exc.rcvd.code if exc.rcvd else None)
            self.close()
            return None
        if isinstance(data, bytes):
            return None
        try:
            event = json.loads(data)
        except ValueError:
            return None
        return event if isinstance(event, dict) and isinstance(event.get("data"), dict) else None

    def close(self) -> None:
        """Closes the socket (idempotent)."""
        self._connection = None
        self._closing.close()


class RunState:
    """One prompt's progress, from its events and the server's queue."""

    def __init__(self, workflow: Workflow, prompt_id: str) -> None:
        self._workflow = workflow
        self.prompt_id = prompt_id
        self.fraction = 0.0
        self.stage = "queued"
        self.started = False
        # The server announced the end: /history should hold the result now or very soon.
        self.ending = False
        self.heard = time.monotonic()
        self._samplers: list[str] = list(workflow.samplers)

    def queued(self, position: int) -> None:
        """The server's queue holds it, position-th in line."""
        if not self.started:
            self.stage = f"queued (position {position})"

    def running(self) -> None:
        """The server's queue says it runs."""
        if not self.started:
            self.started = True
            self._advance(STARTED, "running")

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Reads one event; True when it announces the end of our prompt."""
        kind, data = event.get("type"), event["data"]
        if data.get("prompt_id", self.prompt_id) != self.prompt_id:
            return False
        self.heard = time.monotonic()
        if kind in TERMINAL or (kind == "executing" and data.get("node") is None and "prompt_id" in data):
            self.ending = True
            return True
        if kind == "execution_start":
            self.running()
        elif kind == "executing" and data.get("node") is not None:
            self.running()
            self.stage = f"running {self._workflow.class_of(str(data['node'])) or 'node ' + str(data['node'])}"
        elif kind == "progress":
            self.running()
            self._progress(str(data.get("node")), data.get("value"), data.get("max"))
        return False

    def followed(self, socket_alive: bool) -> bool:
        """Whether the socket follows the run well enough that the queue need not be read."""
        recent = time.monotonic() - self.heard < QUIET_SECONDS
        return self.started and socket_alive and recent and not self.ending

    def _progress(self, node: str, value: Any, total: Any) -> None:
        if not (isinstance(value, int | float) and isinstance(total, int | float) and total > 0):
            return
        done = min(1.0, max(0.0, value / total))
        label = self._workflow.class_of(node) or "node"
        if node not in self._samplers and not self._workflow.samplers:
            # A workflow without a node named as a sampler: each node reporting progress is a phase.
            self._samplers.append(node)
        if node in self._samplers:
            share = (self._samplers.index(node) + done) / len(self._samplers)
            self._advance(STARTED + (SAMPLED - STARTED) * share, f"sampling {int(value)}/{int(total)}")
        else:
            self.stage = f"{label} {int(value)}/{int(total)}"

    def _advance(self, fraction: float, stage: str) -> None:
        self.fraction = max(self.fraction, min(fraction, SAMPLED))
        self.stage = stage
