"""ExecSync's output, kept within what one CRI answer may carry.

kubelet and crictl refuse gRPC messages over 16 MiB, so stdout and stderr
together are kept to ``MAX_OUTPUT``: 16 MiB less 64 KiB for the rest of the
answer. Past that the bytes are still read (a command must never block on a
full pipe) and dropped, and the cut is logged.
"""

from __future__ import annotations

import logging

log = logging.getLogger("pycrid.exec")

MAX_OUTPUT = 16 * 1024 * 1024 - 64 * 1024
"""Bytes of stdout and stderr together in one ExecSync answer."""


class CappedOutput:
    """stdout and stderr of a command, cut off once they hold ``limit`` bytes together."""

    def __init__(self, limit: int = MAX_OUTPUT) -> None:
        self.limit = limit
        self.streams = {"stdout": bytearray(), "stderr": bytearray()}
        self.dropped = 0

    def add(self, name: str, data: bytes) -> None:
        """Keep what fits of ``data`` on stream ``name`` ("stdout" or "stderr")."""
        room = max(self.limit - len(self.streams["stdout"]) - len(self.streams["stderr"]), 0)
        self.streams[name] += data[:room]
        self.dropped += max(len(data) - room, 0)

    @property
    def stdout(self) -> bytes:
        return bytes(self.streams["stdout"])

    @property
    def stderr(self) -> bytes:
        return bytes(self.streams["stderr"])

    def log_truncation(self, container_id: str) -> None:
        if self.dropped:
            log.warning(
                "exec in %s: output cut to %d bytes, %d dropped",
                container_id[:12],
                self.limit,
                self.dropped,
            )
