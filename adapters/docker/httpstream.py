"""Long streamed answers of dockerd (a container's log), read on the event loop.

The docker SDK reads a streamed answer with blocking calls, so each open
stream holds a thread and a requests session's connection: on a node with
hundreds of containers, hundreds of threads that only wait. Here a stream is
an asyncio connection and h11 decodes the answer (chunked or not); a quiet
stream costs a socket and a few objects, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import urlencode, urlsplit

import h11

from pycrid.adapters import errors
from pycrid.adapters.docker.errormap import error_for_status

HEAD_TIMEOUT = 60.0
"""Seconds dockerd may take to begin its answer."""
READ_SIZE = 64 * 1024


async def connect(endpoint: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A new connection to dockerd at ``endpoint`` (``unix://`` or ``tcp://``)."""
    parts = urlsplit(endpoint)
    try:
        if parts.scheme in ("unix", "http+unix"):
            return await asyncio.open_unix_connection(parts.path)
        if parts.scheme in ("tcp", "http"):
            return await asyncio.open_connection(parts.hostname, parts.port or 2375)
    except OSError as e:
        raise errors.Unavailable(f"docker is not reachable at {endpoint}: {e.strerror}") from None
    raise errors.Unavailable(f"streams need a unix:// or tcp:// docker endpoint, not {endpoint}")


class HttpStream:
    """The body of one streamed answer; see ``AsyncStream`` in api.py."""

    def __init__(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self._conn = conn
        self._reader = reader
        self._writer = writer
        self._ended = False

    async def read(self) -> bytes:
        """The body's next bytes (all that arrived together); b"" at its end.

        Cancelling a read loses nothing: bytes are only taken off the
        connection when they are returned.
        """
        data = bytearray()
        while not self._ended:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as e:
                raise OSError(f"docker's stream broke off: {e}") from None
            if event is h11.NEED_DATA:
                if data:
                    break  # hand over what is here before waiting for more
                chunk = await self._reader.read(READ_SIZE)
                self._conn.receive_data(chunk)
            elif isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self._ended = True
        return bytes(data)

    def abort(self) -> None:
        """End the stream now; a pending ``read`` returns or raises."""
        self._ended = True
        self._writer.transport.abort()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()


async def get_stream(
    endpoint: str, target: str, query: dict[str, str | int], *, call: str
) -> HttpStream:
    """GET ``target`` with ``query``: its streamed body, or the CRI error of dockerd's answer.

    ``call`` names the ``DockerApi`` call, for the error mapping.
    """
    reader, writer = await connect(endpoint)
    conn = h11.Connection(h11.CLIENT)
    try:
        request = h11.Request(
            method="GET", target=f"{target}?{urlencode(query)}", headers=[("Host", "docker")]
        )
        writer.write(conn.send(request) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        status = await asyncio.wait_for(_head(conn, reader), HEAD_TIMEOUT)
        if status >= 400:
            body = await asyncio.wait_for(_body(conn, reader), HEAD_TIMEOUT)
            raise error_of(status, body, call)
    except TimeoutError:
        writer.close()
        raise errors.DeadlineExceeded(f"docker did not answer {target} in time") from None
    except (OSError, h11.RemoteProtocolError) as e:
        writer.close()
        raise errors.Unavailable(f"docker at {endpoint} broke off: {e}") from None
    except BaseException:
        writer.close()
        raise
    return HttpStream(conn, reader, writer)


async def _head(conn: h11.Connection, reader: asyncio.StreamReader) -> int:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.Response):
            return int(event.status_code)
        elif isinstance(event, h11.ConnectionClosed):
            raise OSError("the connection closed before an answer")


async def _body(conn: h11.Connection, reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(READ_SIZE))
        elif isinstance(event, h11.Data):
            body += event.data
        else:
            return bytes(body)


def error_of(status: int, answer: bytes, call: str = "") -> errors.CRIError:
    """The CRI error for dockerd's ``status`` answer with body ``answer``."""
    try:
        message = json.loads(answer).get("message", "")
    except (ValueError, AttributeError):
        message = answer.decode(errors="replace").strip()
    return error_for_status(status, message, call)
