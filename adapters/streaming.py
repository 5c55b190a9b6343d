"""The streaming concern of the seam: exec, attach and port-forward sessions.

An adapter implements ``Streaming``; the server hands it the session's
streams, already wired to the client, and reports what it returns (or raises)
on the error stream. Nothing here knows SPDY or WebSocket, so a new backend
plugs in without changes to the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pycrid.api.cri import api_pb2 as cri


@dataclass(frozen=True)
class TerminalSize:
    width: int
    height: int


class InputStream(Protocol):
    """Bytes from the client (stdin, or a forwarded connection's upload)."""

    async def read(self) -> bytes:
        """The next chunk; ``b""`` once the client has closed its side."""
        ...


class OutputStream(Protocol):
    """Bytes to the client (stdout, stderr, or a forwarded connection's download)."""

    async def write(self, data: bytes) -> None:
        """Send ``data``; returns once it is on its way (the transport applies back-pressure)."""
        ...


class ForwardOutput(OutputStream, Protocol):
    """The client's side of a forwarded connection, which can be half-closed."""

    async def close(self) -> None:
        """No more bytes to the client (the pod closed its side); input may go on."""
        ...


class ResizeEvents(Protocol):
    """Terminal sizes sent by the client, in order, until the session ends."""

    def __aiter__(self) -> AsyncIterator[TerminalSize]: ...


@dataclass(frozen=True)
class SessionIO:
    """The standard streams of one exec or attach session; None where not requested."""

    tty: bool
    stdin: InputStream | None
    stdout: OutputStream | None
    stderr: OutputStream | None
    resize: ResizeEvents | None


class Streaming(Protocol):
    """Exec, Attach and PortForward: checks before a session, then the session itself.

    The server answers Exec, Attach and PortForward with the URL of a session
    once ``exec``, ``attach`` or ``port_forward`` has accepted the request;
    when the client connects, the server calls ``run_exec``, ``run_attach``
    or ``run_port_forward`` with the streams wired to it. Methods raise the
    errors of ``pycrid.adapters.errors``; during a session the server turns
    them into an error message for the client.
    """

    async def exec(self, request: cri.ExecRequest) -> None:
        """Refuse an exec session that cannot start (the container is not running)."""
        ...

    async def attach(self, request: cri.AttachRequest) -> None:
        """Refuse an attach session that cannot start."""
        ...

    async def port_forward(self, request: cri.PortForwardRequest) -> None:
        """Refuse a port-forward session that cannot start (the pod is not ready)."""
        ...

    async def run_exec(self, container_id: str, cmd: Sequence[str], io: SessionIO) -> int:
        """Run ``cmd`` in the container wired to ``io``; return its exit code.

        Return once the process has exited and all its output has been written.
        """
        ...

    async def run_attach(self, container_id: str, io: SessionIO) -> None:
        """Connect ``io`` to the container's main process until its output ends.

        When the client closes stdin, close the container's stdin if the
        container was created with ``stdin_once``.
        """
        ...

    async def run_port_forward(
        self, sandbox_id: str, port: int, reader: InputStream, writer: ForwardOutput
    ) -> None:
        """Connect to ``port`` inside the pod's network namespace and copy both ways.

        Each end's half-close is passed on: when the pod closes its side, close
        ``writer``; when ``reader`` ends, shut down writing toward the pod.
        Return when both directions are done. Raise to report a failure to
        connect.
        """
        ...
