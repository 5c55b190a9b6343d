"""Byte transports that a SPDY session runs over: a TCP stream or a WebSocket tunnel.

``write`` is synchronous so that frames whose bytes depend on each other
(compressed header blocks) reach the wire in the order they were made;
``drain`` then waits for the buffer to empty.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

READ_SIZE = 64 * 1024


class ByteTransport(Protocol):
    async def read(self) -> bytes:
        """The next bytes from the peer; ``b""`` at end of stream."""
        ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def close(self) -> None: ...


class StreamTransport:
    """An asyncio stream pair as a ByteTransport."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, initial: bytes = b""
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._initial = initial

    async def read(self) -> bytes:
        if self._initial:
            data, self._initial = self._initial, b""
            return data
        try:
            return await self._reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            return b""

    def write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.drain()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
