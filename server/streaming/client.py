"""Streaming clients: remotecommand and port-forward over SPDY/3.1, and remotecommand
over WebSocket v5, speaking to a URL returned by Exec, Attach or PortForward.

The tests drive the streaming server with them, and ``pycrid compare`` drives
any runtime's sessions with them.

They behave like client-go's executors: the SPDY client offers v5..v1 and opens
the error, stdin, stdout, stderr and resize streams in that order; the
WebSocket client asks for ``v5.channel.k8s.io`` only. Frames come from the
server's own sans-IO SPDY module, driven here from the client side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
from wsproto import WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
)

from pycrid.server.streaming.session import SpdySession, SpdyStream
from pycrid.server.streaming.transport import StreamTransport

CLIENT_PROTOCOLS = (
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
)
TIMEOUT = 30.0


class UpgradeRefused(Exception):
    def __init__(self, status: int, headers: dict[str, list[str]], body: bytes) -> None:
        super().__init__(f"upgrade refused with {status}: {body.decode(errors='replace')}")
        self.status = status
        self.headers = headers
        self.body = body


@dataclass
class Upgraded:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    headers: dict[str, list[str]]
    trailing: bytes


async def _open(url: str, tls: ssl.SSLContext | None = None):
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = tls if parts.scheme == "https" else None
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return reader, writer, parts.netloc, target


async def http_upgrade(
    url: str,
    headers: list[tuple[str, str]],
    method: str = "POST",
    tls: ssl.SSLContext | None = None,
) -> Upgraded:
    """Send an upgrade request; returns the connection after a 101, raises UpgradeRefused."""
    reader, writer, host, target = await _open(url, tls)
    conn = h11.Connection(h11.CLIENT)
    request_headers = [("Host", host), ("Content-Length", "0"), *headers]
    writer.write(conn.send(h11.Request(method=method, target=target, headers=request_headers)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()
    status, body = 0, b""
    response_headers: dict[str, list[str]] = {}
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.InformationalResponse | h11.Response):
            status = event.status_code
            for name, value in event.headers:
                response_headers.setdefault(name.decode().lower(), []).append(value.decode())
            if status == 101:
                trailing, _ = conn.trailing_data
                return Upgraded(reader, writer, response_headers, bytes(trailing))
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            writer.close()
            raise UpgradeRefused(status, response_headers, body)


@dataclass
class ClientConnection:
    """A client-side SPDY session and the task reading its frames."""

    session: SpdySession
    protocol: str
    reader: asyncio.Task[None]

    @classmethod
    def start(cls, session: SpdySession, protocol: str) -> ClientConnection:
        return cls(session, protocol, asyncio.ensure_future(session.run()))

    async def close(self) -> None:
        await self.session.go_away()
        self.reader.cancel()
        await self.session.transport.close()


async def spdy_connect(
    url: str,
    protocols: tuple[str, ...] = CLIENT_PROTOCOLS,
    tls: ssl.SSLContext | None = None,
) -> ClientConnection:
    up = await http_upgrade(
        url,
        [
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            *(("X-Stream-Protocol-Version", p) for p in protocols),
        ],
        tls=tls,
    )
    session = SpdySession(StreamTransport(up.reader, up.writer, up.trailing), client=True)
    return ClientConnection.start(session, up.headers.get("x-stream-protocol-version", [""])[0])


async def read_all(stream: SpdyStream) -> bytes:
    chunks = []
    while data := await stream.read():
        chunks.append(data)
    return b"".join(chunks)


@dataclass
class ExecResult:
    stdout: bytes
    stderr: bytes
    error: bytes
    protocol: str

    @property
    def status(self) -> dict:
        return json.loads(self.error) if self.error else {"status": "Success"}

    @property
    def exit_code(self) -> int:
        status = self.status
        if status.get("status") == "Success":
            return 0
        for cause in status.get("details", {}).get("causes", []):
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
        raise AssertionError(f"no exit code in {status}")


@dataclass
class SpdyExec:
    """An exec or attach session over SPDY, opened like client-go does."""

    conn: ClientConnection
    streams: dict[str, SpdyStream] = field(default_factory=dict)
    _readers: dict[str, asyncio.Task[bytes]] = field(default_factory=dict)
    stdout_seen: bytearray = field(default_factory=bytearray)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        tty: bool = False,
        protocols: tuple[str, ...] = CLIENT_PROTOCOLS,
        tls: ssl.SSLContext | None = None,
    ) -> SpdyExec:
        conn = await spdy_connect(url, protocols, tls)
        client = cls(conn)
        session, protocol = conn.session, conn.protocol
        kinds = ["error"]
        if stdin:
            kinds.append("stdin")
        if stdout:
            kinds.append("stdout")
        if stderr and not tty:
            kinds.append("stderr")
        if tty and protocol not in ("v2.channel.k8s.io", "channel.k8s.io"):
            kinds.append("resize")
        for kind in kinds:
            client.streams[kind] = await session.open_stream((("streamtype", kind),))
        for kind in ("error", "stderr"):
            if kind in client.streams:
                client._readers[kind] = asyncio.ensure_future(read_all(client.streams[kind]))
        return client

    async def write(self, data: bytes) -> None:
        await self.streams["stdin"].write(data)

    async def close_stdin(self) -> None:
        await self.streams["stdin"].close()

    async def resize(self, width: int, height: int) -> None:
        await self.streams["resize"].write(
            json.dumps({"Width": width, "Height": height}).encode() + b"\n"
        )

    async def read_until(self, expected: bytes, timeout: float = TIMEOUT) -> bytes:
        """Read stdout until ``expected`` has appeared; returns all stdout so far."""

        async def loop() -> None:
            while expected not in self.stdout_seen:
                data = await self.streams["stdout"].read()
                if not data:
                    raise AssertionError(f"stdout ended before {expected!r}: {self.stdout_seen!r}")
                self.stdout_seen += data

        await asyncio.wait_for(loop(), timeout)
        return bytes(self.stdout_seen)

    async def wait(self, timeout: float = TIMEOUT) -> ExecResult:
        """Read to the end, then hang up like client-go does."""

        async def finish() -> ExecResult:
            if "stdout" in self.streams:
                self.stdout_seen += await read_all(self.streams["stdout"])
            stderr = await self._readers["stderr"] if "stderr" in self._readers else b""
            error = await self._readers["error"]
            return ExecResult(bytes(self.stdout_seen), stderr, error, self.protocol)

        try:
            return await asyncio.wait_for(finish(), timeout)
        finally:
            await self.close()

    @property
    def session(self) -> SpdySession:
        return self.conn.session

    @property
    def protocol(self) -> str:
        return self.conn.protocol

    async def close(self) -> None:
        for stream in self.streams.values():
            stream.reset()
        await self.conn.close()


@dataclass
class SpdyPortForward:
    """A port-forward connection over SPDY (or SPDY tunnelled in a WebSocket)."""

    conn: ClientConnection
    next_request: int = 0

    @classmethod
    async def open(cls, url: str, tls: ssl.SSLContext | None = None) -> SpdyPortForward:
        conn = await spdy_connect(url, ("portforward.k8s.io",), tls)
        if conn.protocol != "portforward.k8s.io":
            await conn.close()
            raise UpgradeRefused(101, {}, f"answered protocol {conn.protocol!r}".encode())
        return cls(conn)

    @classmethod
    async def open_tunnel(cls, url: str) -> SpdyPortForward:
        ws = await WsClient.connect(url, "SPDY/3.1+portforward.k8s.io")
        session = SpdySession(ws.as_transport(), client=True)
        return cls(ClientConnection.start(session, "portforward.k8s.io"))

    async def connect(self, port: int) -> tuple[SpdyStream, SpdyStream]:
        """The (data, error) streams of one forwarded connection."""
        rid = str(self.next_request)
        self.next_request += 1
        base = (("port", str(port)), ("requestid", rid))
        error = await self.conn.session.open_stream((("streamtype", "error"), *base))
        await error.close()
        data = await self.conn.session.open_stream((("streamtype", "data"), *base))
        return data, error

    async def close(self) -> None:
        await self.conn.close()


# WebSocket.


class WsClient:
    """A minimal WebSocket client on wsproto."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ws: WSConnection
    ):
        self.reader = reader
        self.writer = writer
        self.ws = ws
        self.subprotocol = ""
        self.closed = False
        self.close_code: int | None = None
        self._pending: list[BytesMessage] = []

    @classmethod
    async def connect(cls, url: str, *subprotocols: str) -> WsClient:
        reader, writer, host, target = await _open(url)
        ws = WSConnection(ConnectionType.CLIENT)
        client = cls(reader, writer, ws)
        writer.write(ws.send(Request(host=host, target=target, subprotocols=list(subprotocols))))
        await writer.drain()
        body = b""
        status = 0
        while True:
            data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            ws.receive_data(data or None)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    client.subprotocol = event.subprotocol or ""
                    return client
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise UpgradeRefused(status, {}, b"")
                elif isinstance(event, RejectData):
                    body += event.data
                    if event.body_finished:
                        raise UpgradeRefused(status, {}, body)
            if not data:
                raise UpgradeRefused(status, {}, body)

    def send(self, data: bytes) -> None:
        self.writer.write(self.ws.send(Message(data=data)))

    async def receive(self) -> BytesMessage | None:
        """The next binary fragment; None after the server closed."""
        while not self._pending:
            if self.closed:
                return None
            data = await asyncio.wait_for(self.reader.read(65536), TIMEOUT)
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, BytesMessage):
                    self._pending.append(event)
                elif isinstance(event, Ping):
                    self.writer.write(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.close_code = event.code
                    with contextlib.suppress(Exception):
                        self.writer.write(self.ws.send(event.response()))
                    self.closed = True
        return self._pending.pop(0)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(self.ws.send(CloseConnection(code=1000)))
        self.writer.close()

    def as_transport(self) -> _WsTransport:
        return _WsTransport(self)


class _WsTransport:
    def __init__(self, client: WsClient) -> None:
        self.client = client

    async def read(self) -> bytes:
        while (fragment := await self.client.receive()) is not None:
            if fragment.data:
                return bytes(fragment.data)
        return b""

    def write(self, data: bytes) -> None:
        self.client.send(data)

    async def drain(self) -> None:
        await self.client.writer.drain()

    async def close(self) -> None:
        await self.client.close()


@dataclass
class WsExec:
    """An exec or attach session over ``v5.channel.k8s.io``."""

    client: WsClient
    outputs: dict[int, bytearray] = field(
        default_factory=lambda: {1: bytearray(), 2: bytearray(), 3: bytearray()}
    )

    @classmethod
    async def open(cls, url: str) -> WsExec:
        client = await WsClient.connect(url, "v5.channel.k8s.io")
        assert client.subprotocol == "v5.channel.k8s.io"
        return cls(client)

    def write(self, data: bytes) -> None:
        self.client.send(bytes([0]) + data)

    def close_stdin(self) -> None:
        self.client.send(bytes([255, 0]))

    def resize(self, width: int, height: int) -> None:
        self.client.send(bytes([4]) + json.dumps({"Width": width, "Height": height}).encode())

    async def read_until(self, expected: bytes, channel: int = 1) -> bytes:
        async def loop() -> None:
            while expected not in self.outputs[channel]:
                if not await self._receive_one():
                    raise AssertionError(f"closed before {expected!r}: {self.outputs!r}")

        await asyncio.wait_for(loop(), TIMEOUT)
        return bytes(self.outputs[channel])

    async def _receive_one(self) -> bool:
        message = await self.client.receive()
        if message is None:
            return False
        data = bytes(message.data)
        # The server sends each channel message in one frame.
        assert message.message_finished and data, message
        self.outputs.setdefault(data[0], bytearray()).extend(data[1:])
        return True

    async def wait(self) -> ExecResult:
        async def loop() -> None:
            while await self._receive_one():
                pass

        await asyncio.wait_for(loop(), TIMEOUT)
        await self.client.close()
        return ExecResult(
            bytes(self.outputs[1]),
            bytes(self.outputs[2]),
            bytes(self.outputs[3]),
            "v5.channel.k8s.io",
        )
