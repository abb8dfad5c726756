"""A real WebSocket client that collects an order's messages until the server closes."""

from __future__ import annotations

import asyncio

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def collect(url: str, timeout: float = 30) -> tuple[list[dict], int | None]:
    """Every message until the server closes; returns them and the close code."""
    messages: list[dict] = []
    async with connect(url, open_timeout=10) as socket:
        try:
            async with asyncio.timeout(timeout):
                async for raw in socket:
                    messages.append(orjson.loads(raw))
        except ConnectionClosed:
            pass
        await socket.wait_closed()
        return messages, socket.close_code
