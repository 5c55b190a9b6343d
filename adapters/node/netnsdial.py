"""Connecting to a TCP port inside another network namespace.

A socket belongs to the network namespace of the thread that created it, and
``setns`` moves only the calling thread. So a short-lived thread of its own
enters the pod's namespace (``/proc/<pid>/ns/net``), connects, hands the
connected socket to the event loop and ends; no thread that runs anything
else ever changes namespace. This keeps forwarded bytes in-process (no
``nsenter``/``socat`` pair per connection) and gives real half-close.
Python 3.11 has no ``os.setns``, hence libc through ctypes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import socket
import threading

from pycrid.adapters.streaming import ForwardOutput, InputStream

CLONE_NEWNET = 0x40000000
CONNECT_TIMEOUT = 10.0
LOOPBACKS = ("127.0.0.1", "::1")

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _enter_netns(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(
                err, f"cannot enter the network namespace of pid {pid}: {os.strerror(err)}"
            )
    finally:
        os.close(fd)


def _connect(pid: int, port: int, timeout: float) -> socket.socket:
    """Blocking, on a throw-away thread: enter the namespace and connect to loopback."""
    _enter_netns(pid)
    first: OSError | None = None
    for host in LOOPBACKS:
        try:
            sock = socket.create_connection((host, port), timeout)
        except OSError as e:
            first = first or e  # IPv4's answer is the telling one
            continue
        sock.setblocking(False)
        return sock
    assert first is not None
    raise first


async def connect(pid: int, port: int, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A non-blocking socket connected to ``port`` on loopback in ``pid``'s network namespace."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[socket.socket] = loop.create_future()

    def deliver(sock: socket.socket | None, error: BaseException | None) -> None:
        if future.done():  # the caller gave up
            if sock is not None:
                sock.close()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(sock)  # type: ignore[arg-type]

    def body() -> None:
        sock: socket.socket | None = None
        error: BaseException | None = None
        try:
            sock = _connect(pid, port, timeout)
        except BaseException as e:
            error = e
        try:
            loop.call_soon_threadsafe(deliver, sock, error)
        except RuntimeError:  # the loop is closed
            if sock is not None:
                sock.close()

    threading.Thread(target=body, name=f"netns-dial-{pid}", daemon=True).start()
    return await future


READ_SIZE = 64 * 1024


async def forward(pid: int, port: int, reader: InputStream, writer: ForwardOutput) -> None:
    """A port-forward connection: ``port`` in ``pid``'s network namespace, copied both ways.

    Each end's half-close is passed on; returns when both directions are done.
    """
    sock = await connect(pid, port)
    pod_reader, pod_writer = await asyncio.open_connection(sock=sock)
    upload = asyncio.ensure_future(_upload(reader, pod_writer))
    try:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await pod_reader.read(READ_SIZE):
                await writer.write(data)
        await writer.close()
        await upload  # the pod may still read what the client sends
    finally:
        upload.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await upload
        pod_writer.close()
        with contextlib.suppress(OSError):
            await pod_writer.wait_closed()


async def _upload(reader: InputStream, writer: asyncio.StreamWriter) -> None:
    """Client to pod until the client's side ends, then half-close toward the pod."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
