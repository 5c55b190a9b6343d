"""The CRI container log format: an encoder, a parser and a file writer.

Every line of a CRI log file is::

    <RFC3339Nano timestamp> <stdout|stderr> <F|P> <message>\\n

``F`` marks a full line (or the last chunk of a long one), ``P`` a partial
chunk: a line longer than the maximum line size is cut into ``P`` chunks that
end with an ``F`` one, and output that ends without a newline is written as
``P`` when its stream closes. kubelet and crictl join ``P`` chunks back into
one line. The timestamp is Go's RFC3339Nano: UTC with ``Z``, and the
fraction of a second without trailing zeros (none at all when it is zero).

The encoder is sans-IO: it turns (timestamp, stream, bytes) into encoded
lines and keeps the unfinished line of each stream; ``CriLogFile`` only
appends bytes to a file and can reopen it for kubelet's log rotation.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pycrid.adapters.node import confined
from pycrid.adapters.node.clientfile import require_regular

STDOUT = "stdout"
STDERR = "stderr"
STREAMS = (STDOUT, STDERR)
FULL = "F"
PARTIAL = "P"
DEFAULT_MAX_LINE = 16 * 1024

Timestamp = int | datetime.datetime  # nanoseconds since the epoch, or an aware datetime

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)"
)


def to_nanoseconds(ts: Timestamp) -> int:
    """Nanoseconds since the epoch of ``ts`` (a naive datetime counts as UTC)."""
    if isinstance(ts, int):
        return ts
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=datetime.UTC)
    delta = ts - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


# Log lines come in bursts within one second: the date and time part of a
# timestamp is converted once per second, not once per line.


@functools.lru_cache(maxsize=64)
def _utc_text(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


@functools.lru_cache(maxsize=64)
def _utc_seconds(date_time: bytes) -> int:
    year, month, day = int(date_time[0:4]), int(date_time[5:7]), int(date_time[8:10])
    hour, minute, second = int(date_time[11:13]), int(date_time[14:16]), int(date_time[17:19])
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def format_timestamp(ts: Timestamp) -> str:
    """``ts`` in Go's time.RFC3339Nano, in UTC: ``2016-10-06T00:17:09.6697942Z``."""
    seconds, fraction = divmod(to_nanoseconds(ts), 1_000_000_000)
    if fraction:
        return f"{_utc_text(seconds)}.{fraction:09d}".rstrip("0") + "Z"
    return _utc_text(seconds) + "Z"


def parse_timestamp(text: str | bytes) -> int:
    """Nanoseconds since the epoch of an RFC3339 timestamp (fraction optional).

    Accepts what Go's lenient RFC3339Nano layout accepts: ``Z`` or a
    ``±hh:mm`` offset, and zero to nine digits of fraction.
    """
    raw = text.encode() if isinstance(text, str) else text
    match = _TIMESTAMP.fullmatch(raw)
    if match is None:
        raise ValueError(f"not an RFC3339 timestamp: {raw[:40]!r}")
    seconds = _utc_seconds(raw[:19])
    zone = match.group(8)
    if zone not in (b"Z", b"z"):
        sign = 1 if zone[:1] == b"+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int((match.group(7) or b"").ljust(9, b"0"))


def encode_line(ts: Timestamp, stream: str, tag: str, message: bytes) -> bytes:
    """One CRI log line; ``message`` must not contain a newline."""
    prefix = f"{format_timestamp(ts)} {stream} {tag} ".encode()
    return prefix + message + b"\n"


class CriLogEncoder:
    """Turns the output of a container's streams into CRI log lines.

    Each stream keeps its own unfinished line, so stdout and stderr may be fed
    in any interleaving. A line is written when its newline arrives, with the
    timestamp of the bytes that completed it; a line longer than
    ``max_line`` bytes is written as ``P`` chunks of ``max_line`` bytes as
    soon as they are known to be partial. ``close`` writes what is left of
    each stream as a ``P`` line.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.max_line = max_line
        self._pending: dict[str, bytearray] = {stream: bytearray() for stream in STREAMS}
        self._last_ts: dict[str, int] = {stream: 0 for stream in STREAMS}

    def feed(self, ts: Timestamp, stream: str, data: bytes) -> bytes:
        """The lines that ``data``, written at ``ts`` on ``stream``, completes."""
        pending = self._buffer(stream)
        ns = to_nanoseconds(ts)
        self._last_ts[stream] = ns
        out = bytearray()
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            pending += data[start:newline]
            self._emit_long(ns, stream, pending, out)
            out += encode_line(ns, stream, FULL, bytes(pending))
            pending.clear()
            start = newline + 1
        pending += data[start:]
        self._emit_long(ns, stream, pending, out)
        return bytes(out)

    def _emit_long(self, ns: int, stream: str, pending: bytearray, out: bytearray) -> None:
        """Write ``P`` chunks while more than ``max_line`` bytes are pending."""
        while len(pending) > self.max_line:
            out += encode_line(ns, stream, PARTIAL, bytes(pending[: self.max_line]))
            del pending[: self.max_line]

    def close(self, stream: str | None = None, ts: Timestamp | None = None) -> bytes:
        """Write the unfinished line of ``stream`` (or of both) as ``P``.

        Without ``ts`` the line carries the time of the stream's last output.
        """
        out = bytearray()
        for name in STREAMS if stream is None else (stream,):
            pending = self._buffer(name)
            if pending:
                ns = self._last_ts[name] if ts is None else to_nanoseconds(ts)
                out += encode_line(ns, name, PARTIAL, bytes(pending))
                pending.clear()
        return bytes(out)

    def pending(self) -> dict[str, tuple[int, bytes]]:
        """The unfinished line of each stream with its last timestamp, to save."""
        return {s: (self._last_ts[s], bytes(self._pending[s])) for s in STREAMS if self._pending[s]}

    def restore(self, pending: dict[str, tuple[int, bytes]]) -> None:
        """Take back what ``pending`` returned, e.g. after a restart."""
        for stream, (ns, data) in pending.items():
            self._buffer(stream)[:] = data
            self._last_ts[stream] = ns

    def _buffer(self, stream: str) -> bytearray:
        try:
            return self._pending[stream]
        except KeyError:
            raise ValueError(f"unknown stream {stream!r}") from None


@dataclass(frozen=True)
class CriLogLine:
    timestamp: int  # nanoseconds since the epoch
    stream: str
    tag: str  # the first tag: F or P
    message: bytes

    @property
    def partial(self) -> bool:
        return self.tag == PARTIAL


def parse_line(line: bytes) -> CriLogLine:
    """One CRI log line (with or without its newline); ValueError if malformed."""
    if line.endswith(b"\n"):
        line = line[:-1]
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise ValueError(f"not a CRI log line: {line[:80]!r}")
    if len(parts) == 3:
        parts.append(b"")
    ts, stream, tags, message = parts
    name = stream.decode(errors="replace")
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r} in a CRI log line")
    tag = tags.split(b":", 1)[0].decode(errors="replace")
    if tag not in (FULL, PARTIAL):
        raise ValueError(f"unknown tag {tag!r} in a CRI log line")
    return CriLogLine(parse_timestamp(ts), name, tag, message)


def parse_lines(data: bytes) -> Iterator[CriLogLine]:
    """Every complete line of ``data``; a trailing unterminated line is ignored."""
    lines = data.split(b"\n")
    for line in lines[:-1]:
        yield parse_line(line)


def join_lines(lines: Iterator[CriLogLine] | list[CriLogLine]) -> list[tuple[str, bytes]]:
    """The logical lines (stream, message) after joining ``P`` chunks per stream."""
    joined: list[tuple[str, bytes]] = []
    open_parts: dict[str, bytearray] = {}
    for line in lines:
        part = open_parts.setdefault(line.stream, bytearray())
        part += line.message
        if not line.partial:
            joined.append((line.stream, bytes(part)))
            del open_parts[line.stream]
    joined.extend((stream, bytes(part)) for stream, part in open_parts.items() if part)
    return joined


class CriLogFile:
    """Appends CRI log lines to a container's log file.

    ``reopen`` closes the file and opens a new one at the same path: kubelet
    renames the file it rotates and then asks for a new one, and from then on
    the renamed file must stop growing.
    """

    def __init__(
        self, path: str | os.PathLike[str], mode: int = 0o640, root: str | None = None
    ) -> None:
        """Open ``path``; with ``root``, ``path`` must lie below it and is opened
        without following any symlink there (``confined.open_beneath``)."""
        self.path = Path(path)
        self.root = root
        self._mode = mode
        self._fd: int | None = None
        self._open()

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        if self.root is not None:
            relative = os.path.relpath(self.path, self.root)
            self._fd = confined.open_beneath(self.root, relative, flags, self._mode)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_NONBLOCK, self._mode)
        try:
            require_regular(fd, f"log file {str(self.path)[:64]!r}")
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, data: bytes) -> None:
        """Append ``data`` (whole lines) straight to the file, unbuffered."""
        if self._fd is None:
            raise ValueError(f"log file {self.path} is closed")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def identity(self) -> tuple[int, int]:
        """(device, inode) of the open file: tells a reopened file from the old one."""
        if self._fd is None:
            raise ValueError(f"log file {self.path} is closed")
        st = os.fstat(self._fd)
        return st.st_dev, st.st_ino

    def size(self) -> int:
        if self._fd is None:
            raise ValueError(f"log file {self.path} is closed")
        return os.fstat(self._fd).st_size

    def reopen(self) -> None:
        """Open (creating it if needed) the file at ``path`` in place of the current one.

        When the new file cannot be opened (a FIFO there, say), the current
        one stays open and in use, and the error is raised.
        """
        old, self._fd = self._fd, None
        try:
            self._open()
        except BaseException:
            self._fd = old
            raise
        if old is not None:
            os.close(old)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
