"""Docker's multiplexed stream format, as a sans-IO demultiplexer.

When a container or exec has no TTY, Docker sends stdout and stderr over one
connection, each write framed by an 8-byte header: the stream (0 stdin,
1 stdout, 2 stderr, 3 a daemon error), three zero bytes, and the payload's
length as a big-endian 32-bit integer. With a TTY there are no frames: the
bytes are the terminal's output.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct(">BxxxL")
STREAM_NAMES = {0: "stdin", 1: "stdout", 2: "stderr", 3: "error"}


@dataclass(frozen=True)
class Frame:
    stream: str  # stdin, stdout, stderr or error
    data: bytes


class StdStreamError(ValueError):
    """The bytes are not Docker's multiplexed stream format."""


class StdStreamDemuxer:
    """Feed the bytes of a multiplexed stream in any pieces; get whole frames out."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        start = 0
        while len(buffer) - start >= HEADER.size:
            kind, length = HEADER.unpack_from(buffer, start)
            if kind not in STREAM_NAMES:
                raise StdStreamError(f"unknown stream {kind} in a multiplexed stream header")
            end = start + HEADER.size + length
            if len(buffer) < end:
                break
            frames.append(Frame(STREAM_NAMES[kind], bytes(buffer[start + HEADER.size : end])))
            start = end
        del buffer[:start]
        return frames

    @property
    def incomplete(self) -> bool:
        """True when the bytes so far end inside a frame."""
        return bool(self._buffer)


def encode_frame(stream: str, data: bytes) -> bytes:
    """One frame, the way Docker writes it (for tests and fakes)."""
    kinds = {name: kind for kind, name in STREAM_NAMES.items()}
    return HEADER.pack(kinds[stream], len(data)) + data
