"""Streaming exec (kubectl exec, crictl exec -i/-t): runc exec wired to a session.

Without a tty the process gets pipes: stdin from the client (closed when the
client closes its side), stdout and stderr to the client's streams.

With a tty, runc 1.1 refuses ``--console-socket`` unless it detaches, and a
detached exec's process is re-parented away from pycrid, taking its exit
status with it. So, as CRI-O does, pycrid opens a pty pair and gives runc the
slave side as stdin, stdout and stderr: runc allocates the container's
terminal and copies between the two. runc clears ONLCR on the container's
terminal and leaves it on ours (raw otherwise), so "\n" reaches the client
as "\r\n"; our slave starts out that way, so that nothing depends on when
runc gets to it. (Output written before runc has cleared the container's
ONLCR comes out as "\r\r\n": a race inside runc, seen with CRI-O too.)
A resize is set on our master with TIOCSWINSZ; SIGWINCH then makes runc copy
that size to the container's terminal (runc reads it from its stdio). The
exec's output ends with EIO on the master once runc, the slave's only
holder, has exited.

The session ends when the process has exited and its output has been
written; the answer is its exit code. When the session is abandoned (the
client went away and a write failed, or the task was cancelled), the process
and everything it started are killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import struct
import subprocess
import termios
import tty
from collections.abc import Coroutine, Iterable
from typing import Any

from pycrid.adapters.deadline import without_deadline
from pycrid.adapters.oci.runtime import fdio
from pycrid.adapters.oci.runtime.execsync import ExecProcess, Stdio
from pycrid.adapters.oci.runtime.ociapi import RuncApi
from pycrid.adapters.streaming import InputStream, OutputStream, ResizeEvents, SessionIO

log = logging.getLogger("pycrid.oci.exec")


def set_window_size(fd: int, width: int, height: int) -> None:
    """TIOCSWINSZ on a terminal descriptor (rows, columns, then two unused pixel sizes)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def _make_raw_with_onlcr(fd: int) -> None:
    """The settings runc gives its terminal (raw, but "\n" still becomes "\r\n"), from the start."""
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[1] |= termios.OPOST | termios.ONLCR
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


async def copy_out(fd: int, stream: OutputStream) -> None:
    """Copy from ``fd`` to the client until end of file."""
    while data := await fdio.read(fd):
        await stream.write(data)


async def copy_in(stream: InputStream, fd: int) -> None:
    """Copy the client's input to ``fd`` until the client closes it (or the reader is gone)."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        while data := await stream.read():
            await fdio.write_all(fd, data)


class _Wiring:
    """Descriptors of one session: the child's ends and ours."""

    def __init__(self) -> None:
        self.child: list[int] = []
        self.ours: list[int] = []

    def close_child_ends(self) -> None:
        fdio.close(*self.child)
        self.child = []

    def close(self) -> None:
        self.close_child_ends()
        fdio.close(*self.ours)
        self.ours = []

    def _close_ours(self, fd: int) -> None:
        if fd in self.ours:
            self.ours.remove(fd)
            fdio.close(fd)


class PipeWiring(_Wiring):
    """Pipes for stdin, stdout and stderr, where the session has them."""

    def __init__(self, io: SessionIO) -> None:
        super().__init__()
        self.io = io
        self.stdin = self._pipe(io.stdin is not None, ours_reads=False)
        self.stdout = self._pipe(io.stdout is not None, ours_reads=True)
        self.stderr = self._pipe(io.stderr is not None, ours_reads=True)

    def _pipe(self, wanted: bool, ours_reads: bool) -> tuple[int, int]:
        """(child end, our end), or DEVNULL for both."""
        if not wanted:
            return subprocess.DEVNULL, -1
        r, w = fdio.pipe()
        child, ours = (w, r) if ours_reads else (r, w)
        self.child.append(child)
        self.ours.append(ours)
        return child, ours

    def stdio(self) -> Stdio:
        return Stdio(False, self.stdin[0], self.stdout[0], self.stderr[0])

    def outputs(self) -> list[Coroutine[Any, Any, None]]:
        copies = []
        if self.io.stdout is not None:
            copies.append(copy_out(self.stdout[1], self.io.stdout))
        if self.io.stderr is not None:
            copies.append(copy_out(self.stderr[1], self.io.stderr))
        return copies

    def inputs(self, execution: ExecProcess) -> list[Coroutine[Any, Any, None]]:
        if self.io.stdin is None:
            return []
        return [self._feed_stdin(self.io.stdin)]

    async def _feed_stdin(self, stream: InputStream) -> None:
        try:
            await copy_in(stream, self.stdin[1])
        finally:
            self._close_ours(self.stdin[1])  # the process sees end of file


class TtyWiring(_Wiring):
    """A pty pair: runc gets the slave as all three streams, we keep the master."""

    def __init__(self, io: SessionIO) -> None:
        super().__init__()
        self.io = io
        self.master, slave = os.openpty()
        _make_raw_with_onlcr(slave)
        self.child.append(slave)
        self.ours.append(self.master)

    def stdio(self) -> Stdio:
        slave = self.child[0]
        return Stdio(True, slave, slave, slave)

    def outputs(self) -> list[Coroutine[Any, Any, None]]:
        if self.io.stdout is None:
            return [self._discard()]
        return [copy_out(self.master, self.io.stdout)]

    async def _discard(self) -> None:
        while await fdio.read(self.master):
            pass

    def inputs(self, execution: ExecProcess) -> list[Coroutine[Any, Any, None]]:
        copies = []
        if self.io.stdin is not None:
            copies.append(copy_in(self.io.stdin, self.master))
        if self.io.resize is not None:
            copies.append(self._resize(self.io.resize, execution))
        return copies

    async def _resize(self, events: ResizeEvents, execution: ExecProcess) -> None:
        async for size in events:
            try:
                set_window_size(self.master, size.width, size.height)
            except OSError as e:
                log.debug("exec in %s: resize failed: %s", execution.container_id[:12], e)
                continue
            if execution.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(execution.proc.pid, signal.SIGWINCH)


async def run_exec_session(
    runc: RuncApi, container_id: str, process: dict[str, Any], io: SessionIO
) -> int:
    """Run ``process`` (an OCI Process) in the container wired to ``io``; its exit code.

    Returns once the process has exited and its output has been written.
    Raises runc's own error (NotFound, FailedPrecondition, Internal) when
    runc could not run the process.
    """
    wiring: PipeWiring | TtyWiring = TtyWiring(io) if io.tty else PipeWiring(io)
    try:
        try:
            execution = await runc.spawn_exec(container_id, process, wiring.stdio())
        finally:
            wiring.close_child_ends()
        try:
            return await _supervise(runc, execution, wiring)
        finally:
            execution.close()
    finally:
        wiring.close()


async def _supervise(runc: RuncApi, execution: ExecProcess, wiring: PipeWiring | TtyWiring) -> int:
    outputs = [asyncio.create_task(c) for c in wiring.outputs()]
    inputs = [asyncio.create_task(c) for c in wiring.inputs(execution)]
    exited = asyncio.create_task(execution.proc.wait())
    try:
        await _exit_or_failure(exited, outputs)
        # runc held the only other end of our pipes (or pty): their ends follow its exit.
        await asyncio.gather(*outputs)
        code = exited.result()
        runc.check_exec_failure(execution, code)
        return code
    except BaseException:
        if execution.proc.returncode is None:
            with without_deadline():
                await asyncio.shield(runc.kill_exec(execution))
        raise
    finally:
        for task in (*outputs, *inputs, exited):
            task.cancel()
        await asyncio.gather(*outputs, *inputs, exited, return_exceptions=True)


async def _exit_or_failure(exited: asyncio.Task[int], outputs: list[asyncio.Task[None]]) -> None:
    """Wait for the process to exit; raise at once if copying output to the client fails."""
    watched: set[asyncio.Future[Any]] = {exited, *outputs}
    while not exited.done():
        done, watched = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        _raise_first(t for t in done if t is not exited)


def _raise_first(tasks: Iterable[asyncio.Future[Any]]) -> None:
    for task in tasks:
        failure = task.exception() if task.done() and not task.cancelled() else None
        if failure is not None:
            raise failure
