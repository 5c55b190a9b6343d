"""WebSocket connections for the streaming server, framed by wsproto.

The handshake answer is computed here; after it, ``WebSocket`` moves
binary-message fragments in and out, answers pings and completes the closing
handshake. ``TunnelTransport`` turns a WebSocket into the byte stream that a
SPDY session runs over (``SPDY/3.1+portforward.k8s.io``: raw SPDY bytes in
binary messages, no channel byte).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from pycrid.server.streaming.httpupgrade import UpgradeRequest

log = logging.getLogger("pycrid.streaming")

CLOSE_TIMEOUT = 10.0
READ_SIZE = 64 * 1024
CHUNK = 32 * 1024


class HandshakeError(Exception):
    """The WebSocket request cannot be accepted; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def offered_subprotocols(request: UpgradeRequest) -> list[str]:
    return [
        p.strip()
        for v in request.values("sec-websocket-protocol")
        for p in v.split(",")
        if p.strip()
    ]


def handshake_headers(request: UpgradeRequest, subprotocol: str) -> list[tuple[str, str]]:
    """The headers of the 101 answer that accepts ``request`` with ``subprotocol``."""
    if request.method != "GET":
        raise HandshakeError(400, "a WebSocket upgrade must be a GET request")
    if request.header("sec-websocket-version").strip() != "13":
        raise HandshakeError(400, "unsupported WebSocket version (13 is required)")
    key = request.header("sec-websocket-key").strip()
    if not key:
        raise HandshakeError(400, "Sec-WebSocket-Key is missing")
    return [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", generate_accept_token(key.encode()).decode()),
        ("Sec-WebSocket-Protocol", subprotocol),
    ]


class WebSocket:
    """The server side of an accepted WebSocket connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trailing: bytes = b""
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._ws = Connection(ConnectionType.SERVER, trailing_data=trailing)
        self._pending: list[BytesMessage] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    def _flush(self, data: bytes) -> None:
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.drain()

    def send_bytes(self, data: bytes) -> None:
        """Queue one binary message (synchronously, to keep messages in order)."""
        if self._ws.state is ConnectionState.OPEN:
            self._flush(self._ws.send(Message(data=data)))

    async def receive(self) -> BytesMessage | None:
        """The next binary fragment; None once the connection is closed."""
        while not self._pending:
            if self.closed.is_set():
                return None
            try:
                self._process_events()
            except (RemoteProtocolError, LocalProtocolError) as e:
                log.warning("closing a WebSocket connection: %s", e)
                await self._abort()
                return None
            if self._pending:
                break
            if self.closed.is_set():
                return None
            try:
                data = await self._reader.read(READ_SIZE)
            except (ConnectionError, OSError):
                data = b""
            self._ws.receive_data(data or None)
        return self._pending.pop(0)

    def _process_events(self) -> None:
        for event in self._ws.events():
            if isinstance(event, BytesMessage):
                self._pending.append(event)
            elif isinstance(event, Ping):
                self._flush(self._ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    self._flush(self._ws.send(event.response()))
                self.closed.set()
            elif isinstance(event, TextMessage):
                raise RemoteProtocolError("text messages are not part of this protocol", None)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait (bounded) for the peer's answer."""
        if self._ws.state is ConnectionState.OPEN:
            self._flush(self._ws.send(CloseConnection(code=code, reason=reason)))
            await self.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain_until_closed(), CLOSE_TIMEOUT)
        await self._shutdown()

    async def _drain_until_closed(self) -> None:
        while await self.receive() is not None:
            pass

    async def _abort(self) -> None:
        if self._ws.state is ConnectionState.OPEN:
            with contextlib.suppress(LocalProtocolError):
                self._flush(
                    self._ws.send(CloseConnection(code=CloseReason.PROTOCOL_ERROR, reason=""))
                )
        await self._shutdown()

    async def _shutdown(self) -> None:
        self.closed.set()
        await self.drain()
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


class TunnelTransport:
    """A WebSocket as a ByteTransport for a SPDY session inside it."""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def read(self) -> bytes:
        while True:
            fragment = await self._ws.receive()
            if fragment is None:
                return b""
            if fragment.data:
                return bytes(fragment.data)

    def write(self, data: bytes) -> None:
        self._ws.send_bytes(data)

    async def drain(self) -> None:
        await self._ws.drain()

    async def close(self) -> None:
        await self._ws.close()
