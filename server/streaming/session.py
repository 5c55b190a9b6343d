"""A SPDY/3.1 session over a ByteTransport: streams with async read and write.

The read loop (``run``) turns frames into per-stream input; a stream's bounded
inbox pauses the loop when its reader falls behind, which pushes back on the
peer through TCP. The server side accepts or refuses each stream the peer
opens, and replies before any data can be sent on it; the client side (used by
tests) opens streams and waits for their replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from pycrid.server.streaming import spdy
from pycrid.server.streaming.pipe import Pipe
from pycrid.server.streaming.spdy_headers import Headers, header
from pycrid.server.streaming.transport import ByteTransport

log = logging.getLogger("pycrid.streaming")

CHUNK = 32 * 1024
MAX_STREAMS = 1000
"""Open streams a peer may have on one connection; more are refused."""


class StreamReset(Exception):
    """The peer refused or reset the stream."""


class SpdyStream:
    def __init__(self, session: SpdySession, stream_id: int, headers: Headers) -> None:
        self.session = session
        self.id = stream_id
        self.headers = headers
        self._input = Pipe()
        self._remote_done = False  # FIN or RST seen, or the connection ended
        self._local_done = False  # our FIN or RST sent
        self.was_reset = False
        self.replied: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def header(self, name: str) -> str:
        return header(self.headers, name)

    @property
    def kind(self) -> str:
        return self.header("streamtype")

    async def read(self) -> bytes:
        """The next chunk from the peer; ``b""`` after its FIN or RST."""
        return await self._input.read()

    async def write(self, data: bytes) -> None:
        """Send ``data``; dropped silently once this stream is closed or reset."""
        view = memoryview(data)
        for start in range(0, len(view), CHUNK):
            if self._local_done or self.session.closed.is_set():
                return
            self.session.send(spdy.Data(self.id, bytes(view[start : start + CHUNK])))
            await self.session.drain()

    async def close(self) -> None:
        """Half-close: send FIN; the peer may still send."""
        if not self._local_done:
            self._local_done = True
            self.session.send(spdy.Data(self.id, b"", fin=True))
            await self.session.drain()
        self.session.forget_if_done(self)

    def reset(self, status: int = spdy.RstStatus.CANCEL) -> None:
        """Abort both directions; further input is discarded."""
        if not self._local_done:
            self._local_done = True
            self.session.send(spdy.RstStream(self.id, status))
        self._input.discard()
        self._remote_done = True
        self.session.forget_if_done(self)

    def discard(self) -> None:
        """Nobody will read this stream: drop its input instead of holding the connection."""
        self._input.discard()

    # Called by the session's read loop.

    async def _deliver(self, data: bytes, fin: bool) -> None:
        if self._remote_done:
            return
        await self._input.put(data)
        if fin:
            self._end_input()

    def _end_input(self) -> None:
        self._remote_done = True
        self._input.close()


Acceptor = Callable[[SpdyStream], bool]


class SpdySession:
    """One SPDY connection; see the module docstring."""

    def __init__(
        self, transport: ByteTransport, *, client: bool = False, accept: Acceptor | None = None
    ) -> None:
        self.transport = transport
        self.client = client
        self._accept = accept or (lambda stream: True)
        self._conn = spdy.SpdyConnection()
        self._streams: dict[int, SpdyStream] = {}
        self._next_id = 1 if client else 2
        self._last_peer_id = 0
        self.incoming: asyncio.Queue[SpdyStream] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.going_away = False
        self.error: str = ""

    # Output. ``send`` is synchronous so that header blocks keep their order.

    def send(self, frame: spdy.Frame) -> None:
        if not self.closed.is_set():
            self.transport.write(self._conn.send(frame))

    async def drain(self) -> None:
        await self.transport.drain()

    def forget_if_done(self, stream: SpdyStream) -> None:
        if stream._local_done and stream._remote_done:
            self._streams.pop(stream.id, None)

    async def open_stream(self, headers: Headers, timeout: float = 30.0) -> SpdyStream:
        """Client side: open a stream and wait for the peer's reply."""
        stream = SpdyStream(self, self._next_id, headers)
        self._next_id += 2
        self._streams[stream.id] = stream
        self.send(spdy.SynStream(stream.id, headers))
        await self.drain()
        await asyncio.wait_for(asyncio.shield(stream.replied), timeout)
        return stream

    def refuse_new_streams(self) -> None:
        """From now on, answer the peer's new streams with RST_STREAM."""
        self._accept = lambda stream: False

    async def go_away(self, status: int = spdy.GoAwayStatus.OK) -> None:
        self.send(spdy.GoAway(self._last_peer_id, status))
        await self.drain()

    # Input.

    async def run(self) -> None:
        """Read frames until the peer closes or breaks the protocol; then end every stream."""
        try:
            while True:
                data = await self.transport.read()
                if not data:
                    break
                for frame in self._conn.receive_data(data):
                    await self._handle(frame)
        except spdy.ProtocolError as e:
            self.error = str(e)
            log.warning("closing a SPDY connection: %s", e)
            self.send(spdy.GoAway(self._last_peer_id, spdy.GoAwayStatus.PROTOCOL_ERROR))
            await self.drain()
        finally:
            self.closed.set()
            for stream in list(self._streams.values()):
                stream._end_input()
                if not stream.replied.done():
                    stream.replied.set_exception(StreamReset("connection closed"))
            self._streams.clear()

    async def _handle(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.Data):
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                await stream._deliver(frame.data, frame.fin)
        elif isinstance(frame, spdy.SynStream):
            self._on_syn_stream(frame)
        elif isinstance(frame, spdy.SynReply):
            stream = self._streams.get(frame.stream_id)
            if stream is not None and not stream.replied.done():
                stream.replied.set_result(None)
                if frame.fin:
                    stream._end_input()
        elif isinstance(frame, spdy.RstStream):
            stream = self._streams.pop(frame.stream_id, None)
            if stream is not None:
                stream.was_reset = True
                stream._local_done = True
                stream._end_input()
                if not stream.replied.done():
                    stream.replied.set_exception(StreamReset(f"stream refused ({frame.status})"))
        elif isinstance(frame, spdy.Ping):
            if frame.ping_id % 2 != self._next_id % 2:  # the peer's ping: echo it
                self.send(frame)
                await self.drain()
        elif isinstance(frame, spdy.GoAway):
            self.going_away = True
        # SETTINGS, HEADERS and WINDOW_UPDATE carry nothing these sessions use.

    def _on_syn_stream(self, frame: spdy.SynStream) -> None:
        peer_parity = 0 if self.client else 1
        if frame.stream_id % 2 != peer_parity or frame.stream_id <= self._last_peer_id:
            raise spdy.ProtocolError(f"stream id {frame.stream_id} is out of order")
        self._last_peer_id = frame.stream_id
        if self.going_away:
            self.send(spdy.RstStream(frame.stream_id, spdy.RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(self, frame.stream_id, frame.headers)
        if len(self._streams) >= MAX_STREAMS or not self._accept(stream):
            self.send(spdy.RstStream(frame.stream_id, spdy.RstStatus.REFUSED_STREAM))
            return
        self._streams[stream.id] = stream
        self.send(spdy.SynReply(stream.id))
        stream.replied.set_result(None)
        if frame.fin or frame.unidirectional:
            stream._end_input()
        self.incoming.put_nowait(stream)

    async def wait_closed(self, timeout: float) -> bool:
        """Wait for the peer to close the connection; False on timeout."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            return False
        return True
