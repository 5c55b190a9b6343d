"""The docker adapter's side of exec, attach and port-forward sessions.

Exec and attach run on an upgraded connection to dockerd (``hijack``): the
client's stdin is copied in and half-closed at its end, the output copied out
(demultiplexed into stdout and stderr unless there is a TTY), and terminal
sizes go to Docker's resize calls. Port-forward connects to the port inside
the network namespace of the pod's pause container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pycrid.adapters import errors
from pycrid.adapters.docker.api import ContainerInspect, DockerApi
from pycrid.adapters.docker.execsync import exit_code
from pycrid.adapters.docker.hijack import Hijacked
from pycrid.adapters.docker.stdstream import StdStreamDemuxer
from pycrid.adapters.node import netnsdial
from pycrid.adapters.streaming import (
    ForwardOutput,
    InputStream,
    ResizeEvents,
    SessionIO,
)
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker.streaming")

READ_SIZE = 64 * 1024
RESIZE_RETRIES = 20
RESIZE_RETRY_DELAY = 0.05
FIRST_SIZE_WAIT = 2.0


class DockerStreaming:
    """The streaming concern on Docker's exec and attach APIs."""

    def __init__(self, client: DockerApi) -> None:
        self.client = client

    # Before a session: the URL is handed out only for a running container.

    async def _require_running(self, docker_id: str, what: str) -> ContainerInspect:
        info = await self.client.inspect_container(docker_id)
        if not info.get("State", {}).get("Running"):
            raise errors.FailedPrecondition(f"{what} {docker_id[:13]} is not running")
        return info

    async def exec(self, request: cri.ExecRequest) -> None:
        await self._require_running(request.container_id, "container")

    async def attach(self, request: cri.AttachRequest) -> None:
        await self._require_running(request.container_id, "container")

    async def port_forward(self, request: cri.PortForwardRequest) -> None:
        await self._require_running(request.pod_sandbox_id, "pod sandbox")

    # The sessions.

    async def run_exec(self, container_id: str, cmd: Sequence[str], io: SessionIO) -> int:
        exec_id = await self.client.exec_create(
            container_id,
            cmd,
            stdin=io.stdin is not None,
            stdout=io.stdout is not None,
            stderr=io.stderr is not None,
            tty=io.tty,
        )
        conn = await self.client.exec_attach(exec_id, tty=io.tty)

        async def resize(height: int, width: int) -> None:
            await self.client.exec_resize(exec_id, height, width)

        await _relay(conn, io, multiplexed=not io.tty, resize=resize)
        return await exit_code(self.client, exec_id)

    async def run_attach(self, container_id: str, io: SessionIO) -> None:
        info = await self._require_running(container_id, "container")
        tty = bool(info.get("Config", {}).get("Tty"))
        conn = await self.client.attach_container(
            container_id,
            stdin=io.stdin is not None,
            stdout=io.stdout is not None,
            stderr=io.stderr is not None,
        )

        async def resize(height: int, width: int) -> None:
            await self.client.resize_container(container_id, height, width)

        await _relay(conn, io, multiplexed=not tty, resize=resize)

    async def run_port_forward(
        self, sandbox_id: str, port: int, reader: InputStream, writer: ForwardOutput
    ) -> None:
        info = await self._require_running(sandbox_id, "pod sandbox")
        pid = info.get("State", {}).get("Pid") or 0
        if pid <= 0:
            raise errors.FailedPrecondition(f"pod sandbox {sandbox_id[:13]} is not running")
        await netnsdial.forward(pid, port, reader, writer)


async def _upload(reader: InputStream, writer: asyncio.StreamWriter) -> None:
    """Client to pod until the client's side ends, then half-close toward the pod."""
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


async def _upload_when_sized(
    reader: InputStream, writer: asyncio.StreamWriter, sized: asyncio.Event
) -> None:
    """Hold stdin back until the terminal has its first size (briefly at most).

    Clients send the size right after opening the session, but Docker can
    apply it only once the process runs; a shell reading its first command
    before that would see a terminal of the wrong size.
    """
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sized.wait(), FIRST_SIZE_WAIT)
    await _upload(reader, writer)


async def _relay(
    conn: Hijacked,
    io: SessionIO,
    multiplexed: bool,
    resize: Callable[[int, int], Awaitable[None]],
) -> None:
    """Copy stdio between the session and Docker until Docker ends the output."""
    helpers = []
    sized = asyncio.Event()
    if io.resize is not None:
        helpers.append(asyncio.ensure_future(_resize_loop(io.resize, resize, sized)))
    else:
        sized.set()
    if io.stdin is not None:
        helpers.append(asyncio.ensure_future(_upload_when_sized(io.stdin, conn.writer, sized)))
    try:
        await _download(conn, io, multiplexed)
    finally:
        for task in helpers:
            task.cancel()
        for task in helpers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await conn.close()


async def _download(conn: Hijacked, io: SessionIO, multiplexed: bool) -> None:
    demuxer = StdStreamDemuxer() if multiplexed else None
    data = conn.initial
    while True:
        if data:
            await _deliver(data, io, demuxer)
        try:
            data = await conn.reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            return
        if not data:
            return


async def _deliver(data: bytes, io: SessionIO, demuxer: StdStreamDemuxer | None) -> None:
    if demuxer is None:
        if io.stdout is not None:
            await io.stdout.write(data)
        return
    for frame in demuxer.feed(data):
        target: Any = io.stderr if frame.stream in ("stderr", "error") else io.stdout
        if target is not None:
            await target.write(frame.data)


async def _resize_loop(
    sizes: ResizeEvents, resize: Callable[[int, int], Awaitable[None]], sized: asyncio.Event
) -> None:
    async for size in sizes:
        if size.width <= 0 or size.height <= 0:
            continue
        # The first size may arrive before Docker has started the process.
        for attempt in range(RESIZE_RETRIES):
            try:
                await resize(size.height, size.width)
                break
            except errors.CRIError as e:
                if attempt == RESIZE_RETRIES - 1:
                    log.info("cannot resize the terminal to %s: %s", size, e)
                else:
                    await asyncio.sleep(RESIZE_RETRY_DELAY)
        sized.set()
    sized.set()
