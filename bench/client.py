"""A minimal HTTP/1.1 keep-alive client on asyncio streams: one connection per sender.

httpx.AsyncClient was measured first: on this project's 2-core machine one process of it spends a
whole core at about 600 requests/s with 16 connections and falls to about 170/s with 64 (its
pool's bookkeeping grows with the connections), so it would measure itself. This client parses
only what the bench needs: the status line, Content-Length or chunked bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit


class Connection:
    """One keep-alive connection to base_url; reconnects after a failure."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
        """Sends one request and answers its status and body."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        try:
            self._writer.write(head.encode() + b"\r\n" + payload)
            return await self._read_response(self._reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            await self.close()
            raise

    async def _read_response(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        status_line = (await reader.readline()).split(b" ", 2)
        if len(status_line) < 2:
            raise ConnectionResetError("the server closed the connection")
        status = int(status_line[1])
        length, chunked = 0, False
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await reader.readexactly(length)
        chunks = []
        while size := int((await reader.readline()).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        await reader.readline()
        return status, b"".join(chunks)

    async def close(self) -> None:
        """Closes the connection, if open."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None
