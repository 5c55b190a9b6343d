"""Raw, upgraded connections to dockerd for interactive exec and attach.

``exec start`` and ``attach`` answer ``101 UPGRADED`` and then carry the
process's stdio on the same connection. The docker SDK hands such a socket
back through a buffered HTTP response, where bytes read ahead past the
headers can be lost and reads block a thread; here h11 parses the answer,
the bytes after it are kept, and the connection is an asyncio stream pair
that supports half-close (``write_eof``), which is how stdin's end reaches
the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import h11

from pycrid.adapters.docker.httpstream import connect, error_of

RESPONSE_TIMEOUT = 60.0
READ_SIZE = 64 * 1024


@dataclass
class Hijacked:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    initial: bytes  # stream bytes that arrived with the 101 answer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


async def hijack(
    endpoint: str, api_version: str, path: str, body: dict[str, Any] | None = None
) -> Hijacked:
    """POST ``/v<api_version><path>`` asking for an upgrade; the raw stream after the 101."""
    reader, writer = await connect(endpoint)
    try:
        return await asyncio.wait_for(
            _exchange(reader, writer, f"/v{api_version}{path}", body), RESPONSE_TIMEOUT
        )
    except BaseException:
        writer.close()
        raise


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str, body: dict | None
) -> Hijacked:
    conn = h11.Connection(h11.CLIENT)
    payload = json.dumps(body).encode() if body is not None else b""
    headers = [
        ("Host", "docker"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(payload))),
        ("Connection", "Upgrade"),
        ("Upgrade", "tcp"),
    ]
    writer.write(conn.send(h11.Request(method="POST", target=target, headers=headers)) or b"")
    writer.write(conn.send(h11.Data(data=payload)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    await writer.drain()
    status = 0
    answer = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            trailing, _ = conn.trailing_data
            return Hijacked(reader, writer, bytes(trailing))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            answer += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            raise error_of(status, answer)
