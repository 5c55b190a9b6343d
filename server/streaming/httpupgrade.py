"""The HTTP/1.1 part of a streaming connection: one request, then an upgrade or an error.

h11 parses the request and writes the answer; after a ``101 Switching
Protocols`` the connection belongs to SPDY or WebSocket, starting with the
bytes h11 read past the request (``trailing``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import h11

REQUEST_TIMEOUT = 30.0
MAX_BODY = 64 * 1024


class BadRequest(Exception):
    """The request could not be parsed; answered with 400."""


@dataclass(frozen=True)
class UpgradeRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def header(self, name: str) -> str:
        values = self.values(name)
        return values[0] if values else ""

    def _tokens(self, name: str) -> set[str]:
        return {t.strip().lower() for v in self.values(name) for t in v.split(",")}

    @property
    def wants_upgrade(self) -> bool:
        return "upgrade" in self._tokens("connection")

    @property
    def is_websocket(self) -> bool:
        return self.wants_upgrade and "websocket" in self._tokens("upgrade")

    @property
    def is_spdy(self) -> bool:
        return self.wants_upgrade and "spdy/3.1" in self._tokens("upgrade")


class HttpExchange:
    """One request read from a connection and the answer to it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._conn = h11.Connection(h11.SERVER)

    async def read_request(self, timeout: float = REQUEST_TIMEOUT) -> UpgradeRequest:
        """The request head (any body is read and dropped); BadRequest when malformed."""
        return await asyncio.wait_for(self._read_request(), timeout)

    async def _read_request(self) -> UpgradeRequest:
        request: UpgradeRequest | None = None
        body = 0
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as e:
                raise BadRequest(str(e)) from None
            if event is h11.NEED_DATA:
                data = await self.reader.read(64 * 1024)
                self._conn.receive_data(data)
                if not data and request is None:
                    raise BadRequest("connection closed before a request arrived")
                continue
            if isinstance(event, h11.Request):
                request = UpgradeRequest(
                    method=event.method.decode("ascii", "replace"),
                    path=event.target.decode("ascii", "replace"),
                    headers=tuple(
                        (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in event.headers
                    ),
                )
            elif isinstance(event, h11.Data):
                body += len(event.data)
                if body > MAX_BODY:
                    raise BadRequest("request body is too large")
            elif event is h11.PAUSED or isinstance(event, h11.EndOfMessage):
                if request is None:
                    raise BadRequest("no request")
                return request
            elif isinstance(event, h11.ConnectionClosed):
                raise BadRequest("connection closed during the request")

    async def refuse(
        self, status: int, message: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        """Answer with an error and close the connection."""
        body = (message.rstrip("\n") + "\n").encode()
        all_headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *(headers or []),
        ]
        try:
            out = self._conn.send(h11.Response(status_code=status, headers=all_headers))
            out = (out or b"") + (self._conn.send(h11.Data(data=body)) or b"")
            out += self._conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            out = (
                f"HTTP/1.1 {status} Error\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode() + body
        self.writer.write(out)
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()

    async def switch(self, headers: list[tuple[str, str]]) -> bytes:
        """Answer ``101 Switching Protocols``; returns the bytes read past the request."""
        out = self._conn.send(h11.InformationalResponse(status_code=101, headers=headers))
        self.writer.write(out or b"")
        await self.writer.drain()
        trailing, _closed = self._conn.trailing_data
        return bytes(trailing)
