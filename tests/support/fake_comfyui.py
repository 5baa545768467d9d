"""A fake ComfyUI server (tests only), on FakeProvider: the routes the comfyui kind uses, and the
/ws WebSocket (websockets' sans-I/O protocol on the handler's own socket, so one port serves both).

POST /prompt queues a run that a thread plays like ComfyUI's executor: it waits behind `ahead`
other prompts (while `queue_gate` is open), runs every node, reports the sampler's steps
(progress {value, max}) to the submitting client's socket, then ends as `outcome` says:
"success" (a video under SaveVideo's "images"), "error" (an execution_error), "interrupted"
(someone pressed Cancel on the server), "vanish" (the server restarted: no history ever, the
sockets cut) or "no_video". As on the real server, execution_success is sent before /history
holds the run, and executing {node: null} after. While `hold` is clear a run stays at its first
sampling step (until interrupted).
"""

from __future__ import annotations

import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request as HandshakeRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from tests.support.fake_provider import SAMPLE, FakeProvider, Request, Response

# The protocol logs handshake headers (the key) at DEBUG; tests capture DEBUG logs to look for it.
_QUIET = logging.getLogger("tests.fake_comfyui.websocket")
_QUIET.setLevel(logging.INFO)


@dataclass
class Run:
    """One prompt the fake received."""

    prompt_id: str
    number: int
    client_id: str
    graph: dict[str, Any]
    outcome: str
    ahead: int
    state: str = "pending"  # pending | running | done | deleted
    interrupt: bool = False
    messages: list[list[Any]] = field(default_factory=list)


class FakeComfyUI(FakeProvider):
    """A fake ComfyUI; `key` makes it check `Authorization: Bearer <key>` as an auth proxy would."""

    def __init__(self, *, key: str = "", steps: int = 3, tick: float = 0.02) -> None:
        self._sockets: dict[str, _Socket] = {}
        super().__init__(key_header="authorization", key_value=f"Bearer {key}" if key else "")
        self.steps, self.tick = steps, tick
        self.outcome = "success"
        # Other prompts waiting before each new one; each leaves after a tick while the gate is open.
        self.ahead = 0
        self.queue_gate = threading.Event()
        self.queue_gate.set()
        self.hold = threading.Event()
        self.hold.set()
        # POST /prompt answers 400 with node errors (a model file the server lacks).
        self.refuse = False
        # The socket handshake is refused (a proxy without WebSocket support), or dropped at a step.
        self.refuse_socket = False
        self.drop_at_step: int | None = None
        # The next N GET /view answer 404.
        self.view_failures = 0
        # An old server: it ignores our prompt_id and picks its own.
        self.own_ids = False
        self.runs: dict[str, Run] = {}
        self.uploads: list[dict[str, Any]] = []
        self.sockets_opened = 0
        self._numbers = itertools.count(100)
        self._history: dict[str, dict[str, Any]] = {}
        self.route("POST", r"/prompt", self._prompt)
        self.route("GET", r"/history/(?P<id>[^/]+)", self._history_of)
        self.route("GET", r"/queue", self._queue)
        self.route("POST", r"/queue", self._delete)
        self.route("POST", r"/interrupt", self._interrupt)
        self.route("GET", r"/view", self._view)
        self.route("POST", r"/upload/image", self._upload)
        self.route("GET", r"/system_stats", lambda r: Response(body={"system": {"os": "posix"}, "devices": []}))

    def start(self) -> FakeComfyUI:
        """Serves with a short poll, so that stop() returns at once (each test stops its fake)."""
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def submitted(self) -> list[dict[str, Any]]:
        """The bodies of every POST /prompt."""
        return [c.json() for c in self.calls if (c.method, c.path) == ("POST", "/prompt")]

    def bodies(self, method: str, path: str) -> list[Any]:
        """The JSON bodies sent to method path."""
        return [c.json() for c in self.calls if (c.method, c.path) == (method, path)]

    def drop_sockets(self) -> None:
        """Cuts every open WebSocket without a close frame (a restart, a proxy's timeout)."""
        for connection in list(self._sockets.values()):
            connection.drop()

    def _prompt(self, request: Request) -> Response:
        body = request.json()
        if self.refuse:
            error = {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"}
            nodes = {"37": {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                        "details": "unet_name: 'wan.safetensors' not in []"}],
                            "class_type": "UNETLoader"}}  # fmt: skip
            return Response(400, {"error": {**error, "details": "", "extra_info": {}}, "node_errors": nodes})
        prompt_id = f"server-{next(self.ids)}" if self.own_ids else str(body.get("prompt_id") or next(self.ids))
        run = Run(prompt_id, next(self._numbers), str(body.get("client_id", "")), body["prompt"], self.outcome,
                  self.ahead)  # fmt: skip
        with self.lock:
            self.runs[prompt_id] = run
        threading.Thread(target=self._execute, args=(run,), daemon=True).start()
        return Response(body={"prompt_id": prompt_id, "number": run.number, "node_errors": {}})

    def _execute(self, run: Run) -> None:
        while run.ahead > 0 and run.state == "pending":
            if self.queue_gate.wait(self.tick):
                time.sleep(self.tick)
                run.ahead -= 1
        with self.lock:
            if run.state != "pending":
                return
            run.state = "running"
        self._emit(run, "execution_start", {}, keep=True)
        self._emit(run, "execution_cached", {"nodes": []}, keep=True)
        for node_id, node in run.graph.items():
            self._emit(run, "executing", {"node": node_id, "display_node": node_id})
            if "Sampler" in node["class_type"] and not self._sample(run, node_id):
                return self._end(run, "execution_interrupted", {"node_id": node_id, "node_type": node["class_type"]})
        if run.outcome == "vanish":
            # A restart: the queue and the history are in memory, and the sockets go with them.
            with self.lock:
                run.state = "done"
            self.drop_sockets()
            return None
        if run.outcome == "error":
            details = {"exception_message": "Allocation on device", "exception_type": "torch.OutOfMemoryError"}
            return self._end(run, "execution_error", {"node_id": "3", "node_type": "KSampler", **details})
        if run.outcome == "interrupted":
            return self._end(run, "execution_interrupted", {"node_id": "8", "node_type": "VAEDecode"})
        return self._end(run, "execution_success", {})

    def _sample(self, run: Run, node_id: str) -> bool:
        """The sampler's steps (held after each while `hold` is clear); False when interrupted."""
        for step in range(1, self.steps + 1):
            if run.interrupt:
                return False
            self._emit(run, "progress", {"value": step, "max": self.steps, "node": node_id})
            connection = self._sockets.get(run.client_id)
            if connection is not None:
                connection.send_binary(b"\x00\x00\x00\x01preview")
            if step == self.drop_at_step:
                self.drop_sockets()
            while not self.hold.wait(self.tick):
                if run.interrupt:
                    return False
            time.sleep(self.tick)
        return not run.interrupt

    def _end(self, run: Run, event: str, data: dict[str, Any]) -> None:
        self._emit(run, event, data, keep=True)
        # The real server writes its history only after this event: a client must not race it.
        time.sleep(self.tick)
        success = event == "execution_success"
        outputs: dict[str, Any] = {}
        save = next((n for n, node in run.graph.items() if node["class_type"] == "SaveVideo"), None)
        if success and run.outcome != "no_video" and save is not None:
            name = f"videogen_{run.number:05}_.mp4"
            self.files[f"video/{name}"] = SAMPLE
            outputs[save] = {"images": [{"filename": name, "subfolder": "video", "type": "output"}], "animated": [True]}
        status = {"status_str": "success" if success else "error", "completed": success, "messages": run.messages}
        with self.lock:
            run.state = "done"
            self._history[run.prompt_id] = {"prompt": [run.number, run.prompt_id, run.graph, {}, []],
                                            "outputs": outputs, "status": status, "meta": {}}  # fmt: skip
        self._emit(run, "executing", {"node": None})

    def _emit(self, run: Run, event: str, data: dict[str, Any], *, keep: bool = False) -> None:
        data = {**data, "prompt_id": run.prompt_id, "timestamp": int(time.time() * 1000)}
        if keep:
            run.messages.append([event, data])
        connection = self._sockets.get(run.client_id)
        if connection is not None:
            connection.send({"type": event, "data": data})

    def _history_of(self, request: Request) -> Response:
        with self.lock:
            entry = self._history.get(request.match["id"])
        return Response(body={request.match["id"]: entry} if entry else {})

    def _queue(self, request: Request) -> Response:
        def item(run: Run) -> list[Any]:
            return [run.number, run.prompt_id, run.graph, {"client_id": run.client_id}, []]

        with self.lock:
            running = [item(r) for r in self.runs.values() if r.state == "running"]
            pending = [item(r) for r in self.runs.values() if r.state == "pending"]
            # Others' prompts, numbered before ours and listed after them (the server's list is a heap).
            others = max((r.ahead for r in self.runs.values() if r.state == "pending"), default=0)
            pending += [[i, f"other-{i}", {}, {}, []] for i in range(others)]
        return Response(body={"queue_running": running, "queue_pending": pending})

    def _delete(self, request: Request) -> Response:
        with self.lock:
            for prompt_id in request.json().get("delete", []):
                run = self.runs.get(prompt_id)
                if run is not None and run.state == "pending":
                    run.state = "deleted"
        return Response(raw=b"", content_type="text/plain")

    def _interrupt(self, request: Request) -> Response:
        wanted = (request.json() or {}).get("prompt_id")
        with self.lock:
            for run in self.runs.values():
                if run.state == "running" and wanted in (None, run.prompt_id):
                    run.interrupt = True
        return Response(raw=b"", content_type="text/plain")

    def _view(self, request: Request) -> Response:
        query = {key: values[0] for key, values in request.query.items()}
        with self.lock:
            if self.view_failures > 0:
                self.view_failures -= 1
                return Response(404, raw=b"", content_type="text/plain")
        content = self.files.get(f"{query.get('subfolder', '')}/{query.get('filename', '')}")
        if content is None or query.get("type") != "output":
            return Response(404, raw=b"", content_type="text/plain")
        return Response(raw=content, content_type="video/mp4")

    def _upload(self, request: Request) -> Response:
        head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=email_policy).parsebytes(head + request.body)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                fields[str(name)] = {"filename": part.get_filename(), "data": part.get_payload(decode=True)}
            else:
                fields[str(name)] = part.get_content().strip()
        self.uploads.append(fields)
        image = fields.get("image")
        if not image:
            return Response(400, raw=b"", content_type="text/plain")
        return Response(body={"name": image["filename"], "subfolder": "", "type": fields.get("type", "input")})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        base = super()._handler()
        fake = self

        class Handler(base):  # type: ignore[valid-type, misc]
            def do_GET(self) -> None:
                if urlsplit(self.path).path == "/ws" and self.headers.get("upgrade", "").lower() == "websocket":
                    self.close_connection = True
                    fake._serve_socket(self)
                else:
                    super().do_GET()

        return Handler

    def _serve_socket(self, handler: BaseHTTPRequestHandler) -> None:
        if self.refuse_socket or (self.key_value and handler.headers.get("authorization") != self.key_value):
            handler.send_response(403)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        client_id = parse_qs(urlsplit(handler.path).query).get("clientId", [""])[0]
        # http.server has read the handshake; the protocol parses it again, to start past it.
        protocol = ServerProtocol(logger=_QUIET)
        head = "".join(f"{name}: {value}\r\n" for name, value in handler.headers.items())
        protocol.receive_data(f"{handler.requestline}\r\n{head}\r\n".encode("latin-1"))
        [request] = protocol.events_received()
        assert isinstance(request, HandshakeRequest)
        response = protocol.accept(request)
        connection = _Socket(protocol, handler.connection)
        with connection.lock:
            # Registered before the client can read its 101 and submit, so no event is lost.
            self._sockets[client_id] = connection
            self.sockets_opened += 1
            protocol.send_response(response)
            connection.flush()
        connection.send({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}})
        connection.serve(on_close=lambda: self._sockets.pop(client_id, None))


class _Socket:
    """One client's WebSocket on the handler's socket: frames out under a lock, frames in read
    by serve() (which answers pings and close frames) until either side ends it."""

    def __init__(self, protocol: ServerProtocol, sock: socket.socket) -> None:
        self.lock = threading.Lock()
        self._protocol, self._sock = protocol, sock
        self._closed = threading.Event()

    def flush(self) -> None:
        self._sock.sendall(b"".join(self._protocol.data_to_send()))

    def send(self, event: dict[str, Any]) -> None:
        self._send(lambda: self._protocol.send_text(json.dumps(event).encode()))

    def send_binary(self, data: bytes) -> None:
        self._send(lambda: self._protocol.send_binary(data))

    def _send(self, frame: Callable[[], None]) -> None:
        with self.lock:
            if self._closed.is_set() or self._protocol.state is not State.OPEN:
                return
            frame()
            try:
                self.flush()
            except OSError:
                self._closed.set()

    def drop(self) -> None:
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            return

    def serve(self, *, on_close: Callable[[], object]) -> None:
        self._sock.settimeout(0.05)
        try:
            while not self._closed.is_set():
                try:
                    data = self._sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    break
                with self.lock:
                    if data:
                        self._protocol.receive_data(data)
                    else:
                        self._protocol.receive_eof()
                    self._protocol.events_received()
                    try:
                        self.flush()
                    except OSError:
                        break
                    if not data or self._protocol.state is State.CLOSED or self._protocol.close_expected():
                        break
        finally:
            self._closed.set()
            on_close()
