"""Exec and attach sessions: remotecommand over SPDY streams or WebSocket channels.

Both transports end a session the same way, so that no output is lost:
stop taking input (stdin, resize), write the outcome on the error stream,
close the output streams, and only then let the connection go -- over SPDY
by waiting for the client to hang up, over WebSocket with a normal close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from pycrid.adapters.streaming import SessionIO
from pycrid.server.streaming import remotecommand as rc
from pycrid.server.streaming import wschannels
from pycrid.server.streaming.pipe import Pipe
from pycrid.server.streaming.session import SpdySession, SpdyStream
from pycrid.server.streaming.websocket import WebSocket

log = logging.getLogger("pycrid.streaming")

STREAM_CREATION_TIMEOUT = 30.0
CHUNK = 32 * 1024
MAX_PENDING_SIZES = 16
CLIENT_CLOSE_TIMEOUT = 60.0
"""How long a finished SPDY session waits for the client to close the connection."""

Runner = Callable[[SessionIO], Awaitable[rc.Outcome]]


class ResizeQueue:
    """Terminal sizes decoded from the client, as an async iterator for the runtime."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[rc.TerminalSize | None] = asyncio.Queue()
        self._decoder = rc.ResizeDecoder()
        self._ended = False

    def feed(self, data: bytes) -> None:
        if self._ended:
            return
        try:
            sizes = self._decoder.feed(data)
        except rc.ResizeError as e:
            log.warning("ignoring the rest of a resize stream: %s", e)
            self.end()
            return
        for size in sizes:
            if self._queue.qsize() >= MAX_PENDING_SIZES:
                self._queue.get_nowait()  # only the latest sizes matter
            self._queue.put_nowait(size)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[rc.TerminalSize]:
        while (size := await self._queue.get()) is not None:
            yield size


async def run_guarded(run: Runner, io: SessionIO, closed: asyncio.Event) -> rc.Outcome | None:
    """Run the session; None if the client went away first (the run is cancelled)."""
    task = asyncio.ensure_future(run(io))
    waiter = asyncio.ensure_future(closed.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if task.cancelled():
        return None
    return task.result()


# SPDY.


async def _collect_streams(
    session: SpdySession, expected: frozenset[str], timeout: float
) -> dict[str, SpdyStream]:
    streams: dict[str, SpdyStream] = {}

    async def collect() -> None:
        while not expected <= streams.keys():
            stream = await session.incoming.get()
            kind = stream.kind
            if kind in expected and kind not in streams:
                streams[kind] = stream
            else:
                log.warning("refusing an unexpected %r stream", kind)
                stream.reset()

    closed = asyncio.ensure_future(session.closed.wait())
    collecting = asyncio.ensure_future(collect())
    try:
        done, _ = await asyncio.wait(
            {closed, collecting}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        closed.cancel()
        collecting.cancel()
    if collecting not in done or collecting.cancelled():
        raise TimeoutError("the client did not open the expected streams in time")
    return streams


async def _pump_resize(stream: SpdyStream, queue: ResizeQueue) -> None:
    while data := await stream.read():
        queue.feed(data)
    queue.end()


async def serve_spdy(
    session: SpdySession,
    protocol: str,
    options: rc.StreamOptions,
    run: Runner,
    stream_timeout: float = STREAM_CREATION_TIMEOUT,
) -> None:
    """Drive one exec or attach session on an upgraded SPDY connection."""
    streams = await _collect_streams(session, options.expected(protocol), stream_timeout)
    session.refuse_new_streams()
    resize = ResizeQueue() if rc.RESIZE in streams else None
    pump = asyncio.ensure_future(_pump_resize(streams[rc.RESIZE], resize)) if resize else None
    if rc.STDIN in streams and protocol == rc.PROTOCOL_V1:
        await streams[rc.STDIN].close()  # v1 clients expect the server to close stdin at once
    io = SessionIO(
        tty=options.tty,
        stdin=streams.get(rc.STDIN),
        stdout=streams.get(rc.STDOUT),
        stderr=streams.get(rc.STDERR),
        resize=resize,
    )
    try:
        outcome = await run_guarded(run, io, session.closed)
    finally:
        if pump is not None:
            pump.cancel()
    if outcome is None:
        return
    for kind in (rc.STDIN, rc.RESIZE):
        if kind in streams:
            streams[kind].reset()
    status = rc.encode_status(protocol, outcome)
    if status:
        await streams[rc.ERROR].write(status)
    for kind in (rc.STDOUT, rc.STDERR, rc.ERROR):
        if kind in streams:
            await streams[kind].close()


# WebSocket (v5.channel.k8s.io).


class _ChannelOutput:
    def __init__(self, ws: WebSocket, channel: int) -> None:
        self._ws = ws
        self._channel = channel

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), CHUNK):
            if self._ws.closed.is_set():
                return
            self._ws.send_bytes(wschannels.encode(self._channel, data[start : start + CHUNK]))
            await self._ws.drain()


async def _read_channels(ws: WebSocket, stdin: Pipe | None, resize: ResizeQueue | None) -> None:
    decoder = wschannels.ChannelDecoder()
    try:
        while (fragment := await ws.receive()) is not None:
            for event in decoder.feed(bytes(fragment.data), fragment.message_finished):
                channel = event.channel
                if isinstance(event, wschannels.ChannelClosed):
                    if channel == rc.CHANNELS[rc.STDIN] and stdin is not None:
                        stdin.close()
                    elif channel == rc.CHANNELS[rc.RESIZE] and resize is not None:
                        resize.end()
                elif channel == rc.CHANNELS[rc.STDIN] and stdin is not None:
                    await stdin.put(event.data)
                elif channel == rc.CHANNELS[rc.RESIZE] and resize is not None:
                    resize.feed(event.data)
    except wschannels.ChannelError as e:
        log.warning("closing a WebSocket session: %s", e)
        await ws.close(1002, str(e))
    finally:
        if stdin is not None:
            stdin.close()
        if resize is not None:
            resize.end()


async def serve_websocket(ws: WebSocket, options: rc.StreamOptions, run: Runner) -> None:
    """Drive one exec or attach session on a v5.channel.k8s.io WebSocket."""
    stdin = Pipe() if options.stdin else None
    resize = ResizeQueue() if options.tty else None
    reader = asyncio.ensure_future(_read_channels(ws, stdin, resize))
    io = SessionIO(
        tty=options.tty,
        stdin=stdin,
        stdout=_ChannelOutput(ws, rc.CHANNELS[rc.STDOUT]) if options.stdout else None,
        stderr=(
            _ChannelOutput(ws, rc.CHANNELS[rc.STDERR])
            if options.stderr and not options.tty
            else None
        ),
        resize=resize,
    )
    try:
        outcome = await run_guarded(run, io, ws.closed)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    if outcome is not None:
        ws.send_bytes(wschannels.encode(rc.CHANNELS[rc.ERROR], rc.status_v4(outcome)))
        await ws.close(1000)
