"""Attach: a session wired to a running container through conmon's attach socket.

The socket (``<bundle>/attach``, AF_UNIX, SOCK_SEQPACKET) carries one packet
per read of the container's output: a prefix byte naming the stream (2
stdout, 3 stderr; with a tty everything is 2) and up to 8192 bytes. In the
other direction each packet is raw stdin, and conmon reads at most 32767
bytes of a packet (a longer one would be cut), so input goes in smaller
packets. ``shutdown(SHUT_WR)`` tells conmon this client's input has ended;
conmon then closes the container's stdin unless it runs with
``--leave-stdin-open``. Resizes go through the ctl FIFO.

A bundle path may be longer than the 108 bytes of ``sun_path``, so the
socket is reached through ``/proc/self/fd/<bundle dir fd>/attach``.

The session ends when conmon closes the socket (the container exited), when
copying to the client fails (it went away), or, for a container whose stdin
stays open, when the client closes its input (as CRI-O does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path

from pycrid.adapters import errors
from pycrid.adapters.oci.runtime import conmon
from pycrid.adapters.streaming import InputStream, ResizeEvents, SessionIO

log = logging.getLogger("pycrid.oci.attach")

STDOUT = 2
STDERR = 3
MAX_IN_PACKET = 32767  # conmon's read size for client input
RECV_SIZE = 64 * 1024  # more than one packet of conmon's (1 + 8192 bytes)


async def connect(bundle: Path) -> socket.socket:
    """A connection to the attach socket of the conmon serving ``bundle``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    try:
        dir_fd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        sock.close()
        raise errors.NotFound(f"no bundle at {bundle}: {e.strerror}") from None
    try:
        path = f"/proc/self/fd/{dir_fd}/{conmon.ATTACH}"
        await asyncio.get_running_loop().sock_connect(sock, path)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise errors.FailedPrecondition(
            f"container in {bundle.name} is not running (no attach socket)"
        ) from None
    except OSError as e:
        sock.close()
        raise errors.Internal(f"cannot connect to the attach socket in {bundle}: {e}") from None
    finally:
        os.close(dir_fd)
    return sock


async def _receive(sock: socket.socket) -> bytes:
    """The next packet from conmon; ``b""`` once it has closed the socket (or died)."""
    try:
        return await asyncio.get_running_loop().sock_recv(sock, RECV_SIZE)
    except ConnectionResetError:
        return b""


async def _copy_output(sock: socket.socket, io: SessionIO) -> None:
    while packet := await _receive(sock):
        stream = io.stderr if packet[0] == STDERR and not io.tty else io.stdout
        if stream is not None and len(packet) > 1:
            await stream.write(packet[1:])


async def _copy_input(sock: socket.socket, stdin: InputStream) -> None:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(OSError):  # conmon is gone: the output side ends the session
        while data := await stdin.read():
            for start in range(0, len(data), MAX_IN_PACKET):
                await loop.sock_sendall(sock, data[start : start + MAX_IN_PACKET])
        sock.shutdown(socket.SHUT_WR)


async def _forward_resizes(bundle: Path, events: ResizeEvents) -> None:
    async for size in events:
        try:
            conmon.resize(bundle, size.width, size.height)
        except errors.CRIError as e:
            log.debug("resize of %s failed: %s", bundle.name, e)


async def attach(bundle: Path, io: SessionIO, leave_stdin_open: bool = False) -> None:
    """Connect ``io`` to the container whose bundle is ``bundle`` until its output ends.

    ``leave_stdin_open``: the container runs with conmon's
    ``--leave-stdin-open`` (stdin, not stdin_once); the session then also
    ends when the client closes its input.
    """
    sock = await connect(bundle)
    output = asyncio.create_task(_copy_output(sock, io))
    waiting = {output}
    side: list[asyncio.Task[None]] = []
    if io.stdin is not None:
        side.append(asyncio.create_task(_copy_input(sock, io.stdin)))
        if leave_stdin_open:
            waiting.add(side[-1])
    if io.tty and io.resize is not None:
        side.append(asyncio.create_task(_forward_resizes(bundle, io.resize)))
    try:
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # a failure to copy ends the session with its error
    finally:
        for task in (output, *side):
            task.cancel()
        await asyncio.gather(output, *side, return_exceptions=True)
        sock.close()
