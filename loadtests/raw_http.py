"""A minimal HTTP/1.1 keep-alive client for POSTing JSON, for load generation that costs the client little.

httpx spends ~2–3 ms of CPU per request (a 250 orders/s offer would take most of a core on this 2-core
machine, stolen from the engine under test); writing the request bytes and reading a Content-Length body
straight off a pooled asyncio connection costs a tenth of that. Only what the API answers is understood:
a status line, headers with Content-Length, a body. Anything else closes that connection.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse

import orjson

#: uvicorn closes a keep-alive connection idle for 5 s; one idle this long is dropped instead of reused, so a
#: request never lands on a socket the server is closing.
MAX_IDLE_S = 3.0


class HttpError(Exception):
    pass


class RawHttpPool:
    def __init__(self, base_url: str, max_connections: int = 256) -> None:
        url = urlparse(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self._host_header = f"{self.host}:{self.port}"
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def post_json(self, path: str, body: object) -> tuple[int, dict]:
        payload = orjson.dumps(body)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host_header}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        return await self._exchange(head + payload)

    async def get_json(self, path: str) -> tuple[int, dict]:
        return await self._exchange(f"GET {path} HTTP/1.1\r\nHost: {self._host_header}\r\n\r\n".encode())

    async def _exchange(self, request: bytes) -> tuple[int, dict]:
        async with self._slots:
            reader, writer = await self._connection()
            try:
                writer.write(request)
                status_line = await reader.readuntil(b"\r\n")
                headers = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in headers.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                data = await reader.readexactly(length) if length else b""
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                writer.close()
                raise HttpError(repr(exc)) from exc
            self._idle.append((reader, writer, time.monotonic()))
        status = int(status_line.split(b" ", 2)[1])
        return status, (orjson.loads(data) if data else {})

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer, idle_since = self._idle.pop()
            if time.monotonic() - idle_since < MAX_IDLE_S:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.close()
        self._idle.clear()
