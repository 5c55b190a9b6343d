"""SPDY/3.1 framing, sans-IO: feed bytes in, get frames out; ``send(frame) -> bytes``.

Only what Kubernetes' streaming clients (moby/spdystream) use is given
meaning: SYN_STREAM, SYN_REPLY, RST_STREAM, DATA with FIN, PING, GOAWAY;
SETTINGS, HEADERS and WINDOW_UPDATE are parsed and handed up. Those clients do
no flow control, so neither does this side.

Control frame:  |1| version(15) | type(16) | flags(8) | length(24) | data
Data frame:     |0| stream id(31)           | flags(8) | length(24) | data
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pycrid.server.streaming.spdy_headers import (
    HeaderBlockError,
    HeaderCompressor,
    HeaderDecompressor,
    Headers,
)

VERSION = 3
MAX_LENGTH = (1 << 24) - 1
MAX_STREAM_ID = (1 << 31) - 1

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02


class FrameType(enum.IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(enum.IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9


class GoAwayStatus(enum.IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


class ProtocolError(Exception):
    """The peer broke SPDY framing; the connection cannot go on."""


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    fin: bool = False
    unidirectional: bool = False
    associated_id: int = 0
    priority: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    values: tuple[tuple[int, int, int], ...]  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes
    fin: bool = False


Frame = (
    SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data
)


class SpdyConnection:
    """One side of a SPDY/3.1 connection: framing and header compression.

    ``receive_data`` returns the complete frames the bytes finished; it raises
    ProtocolError for malformed input, after which the connection is dead.
    """

    def __init__(self, max_frame: int = MAX_LENGTH) -> None:
        self._buffer = bytearray()
        self._compressor = HeaderCompressor()
        self._decompressor = HeaderDecompressor()
        self._max_frame = max_frame
        self._broken = False

    # Receiving.

    def receive_data(self, data: bytes) -> list[Frame]:
        if self._broken:
            raise ProtocolError("connection already failed")
        self._buffer += data
        frames: list[Frame] = []
        try:
            while len(self._buffer) >= 8:
                word, flags_length = struct.unpack_from(">II", self._buffer)
                flags, length = flags_length >> 24, flags_length & 0xFFFFFF
                if length > self._max_frame:
                    raise ProtocolError(f"frame of {length} bytes is too large")
                if len(self._buffer) < 8 + length:
                    break
                payload = bytes(self._buffer[8 : 8 + length])
                del self._buffer[: 8 + length]
                frame = self._parse(word, flags, payload)
                if frame is not None:
                    frames.append(frame)
        except ProtocolError:
            self._broken = True
            raise
        return frames

    def _parse(self, word: int, flags: int, payload: bytes) -> Frame | None:
        if not word & 0x80000000:
            stream_id = word & MAX_STREAM_ID
            if stream_id == 0:
                raise ProtocolError("data frame on stream 0")
            return Data(stream_id, payload, bool(flags & FLAG_FIN))
        version = (word >> 16) & 0x7FFF
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        kind = word & 0xFFFF
        try:
            frame_type = FrameType(kind)
        except ValueError:
            return None  # unknown control frames are ignored (SPDY/3 section 2.2.1)
        return _CONTROL_PARSERS[frame_type](self, flags, payload)

    def _headers(self, block: bytes) -> Headers:
        try:
            return self._decompressor.decompress(block)
        except HeaderBlockError as e:
            raise ProtocolError(str(e)) from None

    def _syn_stream(self, flags: int, p: bytes) -> SynStream:
        _need(p, 10, "SYN_STREAM")
        stream_id, associated, priority, _slot = struct.unpack_from(">IIBB", p)
        stream_id &= MAX_STREAM_ID
        if stream_id == 0:
            raise ProtocolError("SYN_STREAM for stream 0")
        return SynStream(
            stream_id=stream_id,
            headers=self._headers(p[10:]),
            fin=bool(flags & FLAG_FIN),
            unidirectional=bool(flags & FLAG_UNIDIRECTIONAL),
            associated_id=associated & MAX_STREAM_ID,
            priority=priority >> 5,
        )

    def _syn_reply(self, flags: int, p: bytes) -> SynReply:
        _need(p, 4, "SYN_REPLY")
        stream_id = _stream_id(p, "SYN_REPLY")
        return SynReply(stream_id, self._headers(p[4:]), bool(flags & FLAG_FIN))

    def _headers_frame(self, flags: int, p: bytes) -> HeadersFrame:
        _need(p, 4, "HEADERS")
        stream_id = _stream_id(p, "HEADERS")
        return HeadersFrame(stream_id, self._headers(p[4:]), bool(flags & FLAG_FIN))

    def _rst_stream(self, flags: int, p: bytes) -> RstStream:
        _exact(p, 8, "RST_STREAM")
        stream_id = _stream_id(p, "RST_STREAM")
        (status,) = struct.unpack_from(">I", p, 4)
        if status == 0:
            raise ProtocolError("RST_STREAM with status 0")
        return RstStream(stream_id, status)

    def _settings(self, flags: int, p: bytes) -> Settings:
        _need(p, 4, "SETTINGS")
        (count,) = struct.unpack_from(">I", p)
        _exact(p, 4 + 8 * count, "SETTINGS")
        values = []
        for i in range(count):
            flag_id, value = struct.unpack_from(">II", p, 4 + 8 * i)
            values.append((flag_id >> 24, flag_id & 0xFFFFFF, value))
        return Settings(tuple(values), clear=bool(flags & 0x01))

    def _ping(self, flags: int, p: bytes) -> Ping:
        _exact(p, 4, "PING")
        return Ping(struct.unpack(">I", p)[0])

    def _goaway(self, flags: int, p: bytes) -> GoAway:
        _exact(p, 8, "GOAWAY")
        last, status = struct.unpack(">II", p)
        return GoAway(last & MAX_STREAM_ID, status)

    def _window_update(self, flags: int, p: bytes) -> WindowUpdate:
        _exact(p, 8, "WINDOW_UPDATE")
        stream_id, delta = struct.unpack(">II", p)
        return WindowUpdate(stream_id & MAX_STREAM_ID, delta & 0x7FFFFFFF)

    # Sending.

    def send(self, frame: Frame) -> bytes:
        """The bytes of ``frame``.

        Frames carrying headers advance the compressor: put them on the wire
        in the order they were made.
        """
        if isinstance(frame, Data):
            if not 0 < frame.stream_id <= MAX_STREAM_ID or len(frame.data) > MAX_LENGTH:
                raise ValueError("invalid data frame")
            flags = FLAG_FIN if frame.fin else 0
            return struct.pack(">II", frame.stream_id, flags << 24 | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | (
                FLAG_UNIDIRECTIONAL if frame.unidirectional else 0
            )
            body = struct.pack(
                ">IIBB", frame.stream_id, frame.associated_id, frame.priority << 5, 0
            )
            return _control(
                FrameType.SYN_STREAM, flags, body + self._compressor.compress(frame.headers)
            )
        if isinstance(frame, SynReply):
            body = struct.pack(">I", frame.stream_id) + self._compressor.compress(frame.headers)
            return _control(FrameType.SYN_REPLY, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, HeadersFrame):
            body = struct.pack(">I", frame.stream_id) + self._compressor.compress(frame.headers)
            return _control(FrameType.HEADERS, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, RstStream):
            return _control(
                FrameType.RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status)
            )
        if isinstance(frame, Ping):
            return _control(FrameType.PING, 0, struct.pack(">I", frame.ping_id))
        if isinstance(frame, GoAway):
            body = struct.pack(">II", frame.last_good_stream_id, frame.status)
            return _control(FrameType.GOAWAY, 0, body)
        if isinstance(frame, WindowUpdate):
            body = struct.pack(">II", frame.stream_id, frame.delta)
            return _control(FrameType.WINDOW_UPDATE, 0, body)
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.values)) + b"".join(
                struct.pack(">II", f << 24 | i, v) for f, i, v in frame.values
            )
            return _control(FrameType.SETTINGS, 0x01 if frame.clear else 0, body)
        raise TypeError(f"not a SPDY frame: {frame!r}")


def _control(frame_type: FrameType, flags: int, body: bytes) -> bytes:
    if len(body) > MAX_LENGTH:
        raise ValueError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, flags << 24 | len(body)) + body


def _need(payload: bytes, size: int, what: str) -> None:
    if len(payload) < size:
        raise ProtocolError(f"{what} frame is too short")


def _exact(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise ProtocolError(f"{what} frame has length {len(payload)}, not {size}")


def _stream_id(payload: bytes, what: str) -> int:
    stream_id = struct.unpack_from(">I", payload)[0] & MAX_STREAM_ID
    if stream_id == 0:
        raise ProtocolError(f"{what} for stream 0")
    return stream_id


_CONTROL_PARSERS: dict[FrameType, Callable[[SpdyConnection, int, bytes], Frame]] = {
    FrameType.SYN_STREAM: SpdyConnection._syn_stream,
    FrameType.SYN_REPLY: SpdyConnection._syn_reply,
    FrameType.RST_STREAM: SpdyConnection._rst_stream,
    FrameType.SETTINGS: SpdyConnection._settings,
    FrameType.PING: SpdyConnection._ping,
    FrameType.GOAWAY: SpdyConnection._goaway,
    FrameType.HEADERS: SpdyConnection._headers_frame,
    FrameType.WINDOW_UPDATE: SpdyConnection._window_update,
}
