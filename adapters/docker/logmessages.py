"""Docker's log stream (``GET /containers/{id}/logs?timestamps=1``), sans-IO.

Each log message arrives as ``<RFC3339Nano timestamp> <bytes>``. A message that
ends with a newline is a whole line; one without is a partial chunk: Docker's
log copier cuts lines longer than 16 KiB into chunks of exactly 16 KiB (all
with the timestamp of the first), and output that ends without a newline
becomes a last partial message when the stream closes.

Without a TTY each message is one frame of the multiplexed stream format.
With a TTY the messages follow each other unframed and all count as stdout:
a message ends after its newline, after 16 KiB, or at the end of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycrid.adapters.docker.stdstream import StdStreamDemuxer
from pycrid.adapters.node.crilog import parse_timestamp

DOCKER_CHUNK = 16 * 1024  # the size of Docker's partial log messages
MAX_TIMESTAMP = 40  # an RFC3339Nano timestamp with an offset is 35 bytes


@dataclass(frozen=True)
class LogMessage:
    stream: str  # stdout or stderr
    timestamp: int  # nanoseconds since the epoch, as Docker recorded it
    data: bytes  # with its newline, unless partial


class LogStreamError(ValueError):
    """The bytes are not a timestamped Docker log stream."""


def _split(stream: str, raw: bytes) -> LogMessage:
    space = raw.find(b" ", 0, MAX_TIMESTAMP + 1)
    if space < 0:
        raise LogStreamError(f"log message without a timestamp: {raw[:60]!r}")
    try:
        timestamp = parse_timestamp(raw[:space])
    except ValueError as e:
        raise LogStreamError(str(e)) from None
    return LogMessage(stream, timestamp, raw[space + 1 :])


class LogStreamParser:
    """Feed the bytes of a log stream; get its messages out."""

    def __init__(self, tty: bool, chunk: int = DOCKER_CHUNK) -> None:
        self.tty = tty
        self._chunk = chunk
        self._frames = StdStreamDemuxer()
        self._raw = bytearray()  # TTY: bytes not yet part of a message

    def feed(self, data: bytes) -> list[LogMessage]:
        if not self.tty:
            return [
                _split(frame.stream, frame.data)
                for frame in self._frames.feed(data)
                if frame.stream in ("stdout", "stderr")
            ]
        raw = self._raw
        raw += data
        messages: list[LogMessage] = []
        start = 0
        while True:
            space = raw.find(b" ", start, start + MAX_TIMESTAMP + 1)
            if space < 0:
                if len(raw) - start > MAX_TIMESTAMP:
                    text = bytes(raw[start : start + 60])
                    raise LogStreamError(f"log message without a timestamp: {text!r}")
                break
            body = space + 1
            newline = raw.find(b"\n", body, body + self._chunk)
            if newline >= 0:
                end = newline + 1
            elif len(raw) - body >= self._chunk:
                end = body + self._chunk
            else:
                break
            messages.append(_split("stdout", bytes(raw[start:end])))
            start = end
        del raw[:start]
        return messages

    def close(self) -> list[LogMessage]:
        """The end of the stream: what is left is the last (partial) message."""
        if not self.tty or not self._raw:
            return []
        raw, self._raw = bytes(self._raw), bytearray()
        return [_split("stdout", raw)]
