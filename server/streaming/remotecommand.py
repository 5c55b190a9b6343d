"""The remotecommand protocol of exec and attach, without I/O.

Over SPDY the client opens one stream per standard stream, named by the
``streamtype`` header; over WebSocket (v5) each message's first byte names the
channel. Either way the server reports the outcome on the error stream: plain
text up to v3, a JSON ``metav1.Status`` from v4 on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from pycrid.adapters.streaming import TerminalSize

PROTOCOL_V1 = "channel.k8s.io"
PROTOCOL_V2 = "v2.channel.k8s.io"
PROTOCOL_V3 = "v3.channel.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
PROTOCOL_V5 = "v5.channel.k8s.io"

SPDY_PROTOCOLS = (PROTOCOL_V4, PROTOCOL_V3, PROTOCOL_V2, PROTOCOL_V1)
"""What the server accepts over SPDY, best first (v5 is WebSocket only)."""

STDIN, STDOUT, STDERR, ERROR, RESIZE = "stdin", "stdout", "stderr", "error", "resize"
CHANNELS = {STDIN: 0, STDOUT: 1, STDERR: 2, ERROR: 3, RESIZE: 4}
CHANNEL_CLOSE = 255

NON_ZERO_EXIT = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"


@dataclass(frozen=True)
class StreamOptions:
    """Which standard streams a session carries, from the cached CRI request."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    def expected(self, protocol: str) -> frozenset[str]:
        """The stream types the client opens for this session."""
        kinds = {ERROR}
        if self.stdin:
            kinds.add(STDIN)
        if self.stdout:
            kinds.add(STDOUT)
        if self.stderr and not self.tty:
            kinds.add(STDERR)
        if self.tty and supports_resize(protocol):
            kinds.add(RESIZE)
        return frozenset(kinds)


def supports_resize(protocol: str) -> bool:
    return protocol in (PROTOCOL_V3, PROTOCOL_V4, PROTOCOL_V5)


def split_header_values(values: Sequence[str]) -> list[str]:
    """Comma-separated header values, flattened and trimmed, empty ones dropped."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def negotiate(client: Sequence[str], server: Sequence[str]) -> str | None:
    """The first of the client's protocols that the server supports."""
    for protocol in client:
        if protocol in server:
            return protocol
    return None


# The outcome, reported on the error stream.


@dataclass(frozen=True)
class Outcome:
    """How a session ended: an exit code, or an error that kept it from running."""

    exit_code: int = 0
    error: str = ""


def status_v4(outcome: Outcome) -> bytes:
    """The JSON metav1.Status that v4 and v5 clients decode."""
    if outcome.error:
        status = {
            "status": "Failure",
            "message": f"Internal error occurred: {outcome.error}",
            "reason": "InternalError",
            "details": {"causes": [{"message": outcome.error}]},
            "code": 500,
        }
    elif outcome.exit_code == 0:
        status = {"status": "Success"}
    else:
        # The client parses the cause as an 8-bit exit status.
        code = outcome.exit_code & 0xFF
        status = {
            "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": NON_ZERO_EXIT,
            "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
        }
    return json.dumps({"metadata": {}, **status}, separators=(",", ":")).encode()


def status_text(outcome: Outcome) -> bytes:
    """The plain-text error of v1 to v3: nothing at all on success."""
    if outcome.error:
        return f"Internal error occurred: {outcome.error}".encode()
    if outcome.exit_code:
        return (
            f"command terminated with non-zero exit code: exit status {outcome.exit_code}".encode()
        )
    return b""


def encode_status(protocol: str, outcome: Outcome) -> bytes:
    if protocol in (PROTOCOL_V4, PROTOCOL_V5):
        return status_v4(outcome)
    return status_text(outcome)


# Terminal resizing.


class ResizeError(Exception):
    """The resize stream carried something other than terminal sizes."""


class ResizeDecoder:
    """Decodes the resize stream: JSON objects ``{"Width":W,"Height":H}``, one after another."""

    MAX_PENDING = 4096

    def __init__(self) -> None:
        self._buffer = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[TerminalSize]:
        self._buffer += data.decode("utf-8", "replace")
        sizes: list[TerminalSize] = []
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                return sizes
            if not text.startswith("{"):
                raise ResizeError(f"resize message is not a JSON object: {text[:40]!r}")
            try:
                value, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                if len(text) > self.MAX_PENDING:
                    raise ResizeError("resize message is too long or malformed") from None
                self._buffer = text
                return sizes
            self._buffer = text[end:]
            sizes.append(_terminal_size(value))


def _terminal_size(value: object) -> TerminalSize:
    if not isinstance(value, dict):
        raise ResizeError(f"resize message is not an object: {value!r}")
    width, height = value.get("Width", 0), value.get("Height", 0)
    if not all(isinstance(v, int) and 0 <= v <= 0xFFFF for v in (width, height)):
        raise ResizeError(f"bad terminal size: {value!r}")
    return TerminalSize(width=width, height=height)
