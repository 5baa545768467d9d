"""A TCP proxy the tests can cut and restore, to make a real server unreachable and back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Upstream = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class TcpProxy:
    """Forwards 127.0.0.1:port to an upstream; cut() drops every connection and refuses new ones,
    and while `blackhole` is set, what either side sends is swallowed (a server that never answers).
    Once it is cleared, each connection that lost bytes is closed, as TCP resets one a long
    partition broke: a stream with a hole (HTTP/2's header table, Redis' replies) is corrupt."""

    def __init__(self, upstream: Upstream) -> None:
        self._upstream = upstream
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        # Both ends of each connection that lost bytes to the blackhole.
        self._broken: set[asyncio.StreamWriter] = set()
        self._blackhole = False

    @property
    def blackhole(self) -> bool:
        """Whether what either side sends is swallowed."""
        return self._blackhole

    @blackhole.setter
    def blackhole(self, on: bool) -> None:
        self._blackhole = on
        if not on:
            for writer in self._broken:
                writer.close()
            self._broken.clear()

    async def start(self) -> None:
        """Listens (on the same port as before, after a cut)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Stops listening and closes every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._upstream()
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer, writer), self._pipe(up_reader, writer, up_writer))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if self.blackhole:
                    self._broken.update((writer, peer))
                    continue
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)
