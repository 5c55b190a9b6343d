"""Port-forward sessions (``portforward.k8s.io``) over SPDY.

For each connection it forwards, the client opens two streams with the same
``requestid``: ``error`` and ``data``, both naming the pod's ``port``. When a
pair is complete the runtime connects to that port inside the pod's network
namespace and copies both ways; a failure is written as text on the error
stream. Pairing is kept apart from I/O in ``PairTracker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from pycrid.server.streaming.session import SpdySession, SpdyStream

log = logging.getLogger("pycrid.streaming")

PROTOCOL = "portforward.k8s.io"
TUNNEL_PREFIX = "SPDY/3.1+"
PAIR_TIMEOUT = 30.0

DATA, ERROR = "data", "error"

Forwarder = Callable[[int, SpdyStream], Awaitable[None]]
"""Forward one connection to a port, reading from and writing to the data stream."""


def stream_port(stream: SpdyStream) -> int | None:
    """The valid port named by a stream's headers, else None."""
    text = stream.header("port")
    if not text.isdigit():
        return None
    port = int(text)
    return port if 0 < port <= 65535 else None


def acceptable(stream: SpdyStream) -> bool:
    """Whether to reply to a stream the client opened (else it is refused)."""
    return stream_port(stream) is not None and stream.kind in (DATA, ERROR)


def request_id(stream: SpdyStream) -> str:
    """The stream's request ID; old clients send none, so derive one from the stream IDs
    (error and data streams of one request are opened back to back)."""
    value = stream.header("requestid")
    if value:
        return value
    return str(stream.id if stream.kind == ERROR else stream.id - 2)


@dataclass
class Pair:
    request_id: str
    streams: dict[str, SpdyStream] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return DATA in self.streams and ERROR in self.streams


class PairError(Exception):
    pass


class PairTracker:
    """Matches data and error streams by request ID."""

    def __init__(self) -> None:
        self._pending: dict[str, Pair] = {}

    def add(self, rid: str, kind: str, stream: SpdyStream) -> tuple[Pair, bool]:
        """Record a stream; returns its pair and whether the pair was new."""
        pair = self._pending.get(rid)
        created = pair is None
        if pair is None:
            pair = self._pending[rid] = Pair(rid)
        if kind in pair.streams:
            raise PairError(f"request {rid} already has a {kind} stream")
        pair.streams[kind] = stream
        if pair.complete:
            del self._pending[rid]
        return pair, created

    def pop(self, rid: str) -> Pair | None:
        return self._pending.pop(rid, None)


async def serve(
    session: SpdySession,
    forward: Forwarder,
    allowed_ports: Collection[int] = (),
    pair_timeout: float = PAIR_TIMEOUT,
) -> None:
    """Forward connections until the client closes the SPDY connection."""
    tracker = PairTracker()
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def expire(rid: str) -> None:
        await asyncio.sleep(pair_timeout)
        pair = tracker.pop(rid)
        if pair is not None:
            await _fail(pair, f"timed out waiting for the streams of request {rid}")

    closed = asyncio.ensure_future(session.closed.wait())
    try:
        while True:
            getter = asyncio.ensure_future(session.incoming.get())
            await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            stream = getter.result()
            rid = request_id(stream)
            try:
                pair, created = tracker.add(rid, stream.kind, stream)
            except PairError as e:
                stream.discard()
                await _fail(Pair(rid, {ERROR: stream} if stream.kind == ERROR else {}), str(e))
                continue
            if created and not pair.complete:
                spawn(expire(rid))
            if pair.complete:
                spawn(_forward_pair(pair, forward, allowed_ports))
    finally:
        closed.cancel()
        for task in list(tasks):
            task.cancel()
        for task in list(tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _forward_pair(pair: Pair, forward: Forwarder, allowed: Collection[int]) -> None:
    data, error = pair.streams[DATA], pair.streams[ERROR]
    error.discard()  # the client never writes on it
    port = stream_port(data) or 0
    try:
        if allowed and port not in allowed:
            raise PermissionError(f"port {port} is not forwarded by this session")
        await forward(port, data)
    except asyncio.CancelledError:
        raise
    except Exception as e:
        message = f"error forwarding port {port} to pod: {e}"
        log.info("%s (request %s)", message, pair.request_id)
        await error.write(message.encode())
    finally:
        if not data.session.closed.is_set():
            data.discard()
            await data.close()
            await error.close()


async def _fail(pair: Pair, message: str) -> None:
    log.info("port-forward request %s: %s", pair.request_id, message)
    error = pair.streams.get(ERROR)
    if error is not None:
        await error.write(message.encode())
        await error.close()
    for stream in pair.streams.values():
        stream.reset()
