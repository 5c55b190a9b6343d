"""A one-way buffer of bytes between a connection's read loop and a stream's reader."""

from __future__ import annotations

import asyncio

LIMIT = 1024 * 1024
"""Bytes a pipe may hold unread before its writer (the read loop) waits."""


class Pipe:
    """Bounded and closable: ``put`` waits while the reader is behind; ``read`` returns
    ``b""`` once the pipe is closed and empty. ``discard`` turns it into a sink."""

    def __init__(self, limit: int = LIMIT) -> None:
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._limit = limit
        self._buffered = 0
        self._space = asyncio.Event()
        self._space.set()
        self._closed = False
        self._discarding = False
        self._eof_read = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def put(self, data: bytes) -> None:
        if self._closed or self._discarding or not data:
            return
        self._chunks.put_nowait(data)
        self._buffered += len(data)
        if self._buffered >= self._limit:
            self._space.clear()
            await self._space.wait()

    def close(self) -> None:
        """No more input: the reader gets what is buffered, then ``b""``."""
        if not self._closed:
            self._closed = True
            self._chunks.put_nowait(b"")

    def discard(self) -> None:
        """Drop what is buffered and all further input; the reader sees the end."""
        self._discarding = True
        while not self._chunks.empty():
            self._chunks.get_nowait()
        self._buffered = 0
        self._space.set()
        self._closed = True
        self._chunks.put_nowait(b"")

    async def read(self) -> bytes:
        if self._eof_read:
            return b""
        data = await self._chunks.get()
        if not data:
            self._eof_read = True
            return data
        self._buffered -= len(data)
        if self._buffered < self._limit:
            self._space.set()
        return data
