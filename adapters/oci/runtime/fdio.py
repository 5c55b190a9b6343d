"""Async reads and writes on raw non-blocking descriptors (pipes, pty masters).

asyncio's subprocess pipes tie the process's exit to its pipes (a background
child holding stdout would keep ``wait()`` waiting, depending on the Python
version), and its pipe transports do not know that a pty master answers EIO
once the other side is gone. The exec code therefore makes its own pipes and
moves bytes with these few functions: one reader and one writer at a time
per descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os

READ_SIZE = 64 * 1024


def pipe() -> tuple[int, int]:
    """A pipe whose ends are close-on-exec (pass one with pass_fds or as stdio)."""
    return os.pipe2(os.O_CLOEXEC)


def close(*fds: int | None) -> None:
    for fd in fds:
        if fd is not None and fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


async def _ready(fd: int, writing: bool) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writing:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def read(fd: int, size: int = READ_SIZE) -> bytes:
    """The next bytes from ``fd``; ``b""`` at end of file (EIO of a pty counts as that)."""
    os.set_blocking(fd, False)
    while True:
        try:
            return os.read(fd, size)
        except BlockingIOError:
            await _ready(fd, writing=False)
        except OSError as e:
            if e.errno == errno.EIO:
                return b""
            raise


async def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; raises BrokenPipeError once the reader is gone."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(fd, writing=True)
