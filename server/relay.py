"""Serving gRPC on a listening socket that systemd passed in, through a relay.

grpcio (including ``grpc.aio``) can only bind addresses it opens itself: its
Python API has no way to serve on an existing listening descriptor (the C
core's fd functions are not exposed). Re-binding the path that
``getsockname()`` reports would be wrong: systemd keeps its own copy of the
listening socket, so the path would point at pycrid's socket while systemd
still queues connections, activates the service, and holds the socket across
daemon restarts on the one pycrid unlinked.

So the daemon binds gRPC to a private socket in a root-only directory and this
relay accepts on the passed socket and copies bytes both ways to it. The
passed socket keeps every property systemd gives it: connections made while
pycrid restarts wait in its backlog, and its owner, group and mode come from
the ``.socket`` unit. The cost is one extra copy of each byte through the
event loop, small beside a CRI call's own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from pathlib import Path

log = logging.getLogger("pycrid")

CHUNK = 256 * 1024


class SocketRelay:
    """Accepts connections on ``listener`` and joins each to the Unix socket ``target``."""

    def __init__(self, listener: socket.socket, target: Path) -> None:
        self.listener = listener
        self.target = target
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._on_connection, sock=self.listener)

    def stop_accepting(self) -> None:
        """Leave new connections in the passed socket's backlog (systemd keeps it open)."""
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        """Stop accepting and cut the connections still open."""
        self.stop_accepting()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _on_connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._relay(client_reader, client_writer)
        finally:
            self._connections.discard(task)

    async def _relay(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server_writer = await asyncio.open_unix_connection(str(self.target))
        except OSError as e:
            log.warning("relay: cannot reach the gRPC server at %s: %s", self.target, e)
            client_writer.close()
            return
        upstream = asyncio.create_task(_pipe(client_reader, server_writer))
        downstream = asyncio.create_task(_pipe(server_reader, client_writer))
        try:
            # A direction that fails ends the connection; one that reaches EOF waits
            # for the other, since HTTP/2 may still answer after the client half-closes.
            pending: set[asyncio.Task[bool]] = {upstream, downstream}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if not all(t.result() for t in done):
                    break
        finally:
            for t in (upstream, downstream):
                t.cancel()
            await asyncio.gather(upstream, downstream, return_exceptions=True)
            for writer in (client_writer, server_writer):
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Copy until EOF (then half-close ``writer``: True) or an error (False)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        return False
    return True
