"""Exec and attach sessions of the docker adapter, over an in-memory dockerd's connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pycrid.adapters import errors
from pycrid.adapters.docker.fake import ExecResult
from pycrid.adapters.docker.streaming import DockerStreaming
from pycrid.adapters.streaming import SessionIO, TerminalSize
from pycrid.api.cri import api_pb2 as cri

from .dockerkit import Kit, make_kit


class Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        self.data += data


class Source:
    def __init__(self, *chunks: bytes) -> None:
        self.chunks = list(chunks)

    async def read(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""


class Sizes:
    def __init__(self, *sizes: TerminalSize) -> None:
        self.sizes = sizes

    async def __aiter__(self) -> AsyncIterator[TerminalSize]:
        for size in self.sizes:
            yield size


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Kit, str]]:
    kit = make_kit(tmp_path)
    pod = await kit.run_pod()
    container_id = await kit.create(pod, "app")
    await kit.containers.start_container(cri.StartContainerRequest(container_id=container_id))
    yield kit, container_id
    await kit.close()


async def test_exec_separates_stdout_and_stderr_and_returns_the_exit_code(
    running: tuple[Kit, str],
) -> None:
    kit, container_id = running
    kit.docker.programs["both"] = lambda argv: ExecResult(b"to out\n", b"to err\n", 4)
    out, err = Sink(), Sink()
    io = SessionIO(tty=False, stdin=None, stdout=out, stderr=err, resize=None)
    code = await DockerStreaming(kit.docker).run_exec(container_id, ["both"], io)
    assert (code, bytes(out.data), bytes(err.data)) == (4, b"to out\n", b"to err\n")


async def test_exec_stdin_reaches_the_process_and_its_end_ends_it(
    running: tuple[Kit, str],
) -> None:
    kit, container_id = running
    out = Sink()
    io = SessionIO(tty=False, stdin=Source(b"one ", b"two"), stdout=out, stderr=None, resize=None)
    code = await asyncio.wait_for(
        DockerStreaming(kit.docker).run_exec(container_id, ["cat"], io), 5
    )
    assert (code, bytes(out.data)) == (0, b"one two")


async def test_exec_with_a_terminal_passes_sizes_on(running: tuple[Kit, str]) -> None:
    kit, container_id = running
    out = Sink()
    sizes = Sizes(TerminalSize(width=80, height=24), TerminalSize(width=0, height=0))
    io = SessionIO(tty=True, stdin=Source(b"typed"), stdout=out, stderr=None, resize=sizes)
    code = await asyncio.wait_for(
        DockerStreaming(kit.docker).run_exec(container_id, ["cat"], io), 5
    )
    assert (code, bytes(out.data)) == (0, b"typed")
    (execution,) = kit.docker.execs.values()
    assert execution.tty and execution.sizes == [(24, 80)]


async def test_sessions_are_refused_for_what_is_not_running(running: tuple[Kit, str]) -> None:
    kit, container_id = running
    streaming = DockerStreaming(kit.docker)
    await streaming.exec(cri.ExecRequest(container_id=container_id, cmd=["true"]))
    kit.docker.exit(container_id, 0)
    with pytest.raises(errors.FailedPrecondition, match="not running"):
        await streaming.exec(cri.ExecRequest(container_id=container_id, cmd=["true"]))
    with pytest.raises(errors.FailedPrecondition, match="not running"):
        await streaming.attach(cri.AttachRequest(container_id=container_id))
    with pytest.raises(errors.NotFound):
        await streaming.port_forward(cri.PortForwardRequest(pod_sandbox_id="nothing"))
    io = SessionIO(tty=False, stdin=None, stdout=Sink(), stderr=None, resize=None)
    with pytest.raises(errors.FailedPrecondition, match="not running"):
        await streaming.run_exec(container_id, ["true"], io)


async def test_attach_ends_when_the_container_stops(running: tuple[Kit, str]) -> None:
    kit, container_id = running
    io = SessionIO(tty=False, stdin=None, stdout=Sink(), stderr=None, resize=None)
    session = asyncio.ensure_future(DockerStreaming(kit.docker).run_attach(container_id, io))
    await asyncio.sleep(0.1)
    assert not session.done()
    kit.docker.exit(container_id, 0)
    await asyncio.wait_for(session, 5)
    assert kit.docker.called("attach_container") == [(container_id, False, True, False)]
