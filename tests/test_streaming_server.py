"""The streaming server in-process, against a fake runtime: every transport end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

import pytest

from pycrid.adapters.config import StreamingConfig
from pycrid.adapters.errors import NotFound
from pycrid.adapters.streaming import ForwardOutput, InputStream, SessionIO
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.streaming.client import (
    SpdyExec,
    SpdyPortForward,
    UpgradeRefused,
    WsClient,
    WsExec,
    http_upgrade,
    read_all,
)
from pycrid.server.streaming.server import StreamingServer
from pycrid.server.streaming.tokens import TokenCache


class FakeRuntime:
    """Commands: ``echo WORDS``, ``fail CODE``, ``cat`` (stdin to stdout), ``sizes``
    (prints each terminal size until stdin ends)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    async def run_exec(self, container_id: str, cmd: Sequence[str], io: SessionIO) -> int:
        self.calls.append(("exec", container_id, *cmd))
        if container_id == "gone":
            raise NotFound("container gone is not running")
        verb, *args = cmd
        if verb == "echo":
            await io.stdout.write(" ".join(args).encode())
            return 0
        if verb == "fail":
            await io.stdout.write(b"out")
            await io.stderr.write(b"err")
            return int(args[0])
        if verb == "cat":
            while data := await io.stdin.read():
                await io.stdout.write(data)
            return 0
        if verb == "sizes":
            async for size in io.resize:
                await io.stdout.write(f"{size.width}x{size.height}\n".encode())
                if size.width == 0:
                    break
            return 0
        if verb == "big":
            await io.stdout.write(bytes(range(256)) * 4096 * int(args[0]))
            return 0
        raise AssertionError(cmd)

    async def run_attach(self, container_id: str, io: SessionIO) -> None:
        self.calls.append(("attach", container_id))
        while data := await io.stdin.read():
            await io.stdout.write(data.upper())

    async def run_port_forward(
        self, sandbox_id: str, port: int, reader: InputStream, writer: ForwardOutput
    ) -> None:
        self.calls.append(("port_forward", sandbox_id, str(port)))
        if port == 1:
            raise NotFound("nothing listens on port 1")
        received = bytearray()
        while data := await reader.read():
            received += data
        await writer.write(f"{port}:{len(received)}:".encode() + bytes(received[:16]))


@pytest.fixture
async def server() -> AsyncIterator[StreamingServer]:
    server = StreamingServer(StreamingConfig(address="127.0.0.1", port=0), FakeRuntime())
    await server.start()
    yield server
    await server.stop()


def exec_url(server: StreamingServer, cmd: list[str], **flags: bool) -> str:
    request = cri.ExecRequest(container_id="c1", cmd=cmd, **flags)
    return server.get_exec(request).url


async def test_url_is_absolute_with_a_token(server: StreamingServer) -> None:
    url = exec_url(server, ["echo"], stdout=True)
    assert url.startswith("http://127.0.0.1:")
    assert url.split("/")[-2] == "exec" and len(url.split("/")[-1]) >= 16


async def test_spdy_exec_separates_stdout_stderr_and_reports_exit_code(
    server: StreamingServer,
) -> None:
    url = exec_url(server, ["fail", "3"], stdout=True, stderr=True)
    session = await SpdyExec.open(url)
    assert session.protocol == "v4.channel.k8s.io"
    result = await session.wait()
    assert (result.stdout, result.stderr) == (b"out", b"err")
    assert result.status["reason"] == "NonZeroExitCode"
    assert result.exit_code == 3


async def test_spdy_exec_success_status(server: StreamingServer) -> None:
    session = await SpdyExec.open(exec_url(server, ["echo", "hello"], stdout=True), stderr=False)
    result = await session.wait()
    assert result.stdout == b"hello"
    assert result.status == {"metadata": {}, "status": "Success"}


async def test_spdy_exec_stdin_round_trip(server: StreamingServer) -> None:
    url = exec_url(server, ["cat"], stdin=True, stdout=True, stderr=True)
    session = await SpdyExec.open(url, stdin=True)
    await session.write(b"ping\n")
    assert await session.read_until(b"ping\n") == b"ping\n"
    await session.close_stdin()
    result = await session.wait()
    assert result.exit_code == 0


async def test_spdy_exec_tty_resize(server: StreamingServer) -> None:
    url = exec_url(server, ["sizes"], stdin=True, stdout=True, tty=True)
    session = await SpdyExec.open(url, stdin=True, tty=True, stderr=False)
    assert "resize" in session.streams
    await session.resize(80, 24)
    await session.resize(120, 40)
    await session.read_until(b"120x40\n")
    await session.resize(0, 0)
    result = await session.wait()
    assert result.stdout == b"80x24\n120x40\n0x0\n"


async def test_large_output_is_not_truncated(server: StreamingServer) -> None:
    session = await SpdyExec.open(exec_url(server, ["big", "3"], stdout=True), stderr=False)
    result = await session.wait()
    assert result.stdout == bytes(range(256)) * 4096 * 3


async def test_older_protocols_get_text_errors(server: StreamingServer) -> None:
    url = exec_url(server, ["fail", "2"], stdout=True, stderr=True)
    session = await SpdyExec.open(url, protocols=("v3.channel.k8s.io", "v2.channel.k8s.io"))
    assert session.protocol == "v3.channel.k8s.io"
    result = await session.wait()
    assert result.error.startswith(b"command terminated with non-zero exit code")


async def test_runtime_error_is_reported_as_internal_error(server: StreamingServer) -> None:
    request = cri.ExecRequest(container_id="gone", cmd=["echo"], stdout=True)
    session = await SpdyExec.open(server.get_exec(request).url, stderr=False)
    result = await session.wait()
    assert result.status["reason"] == "InternalError"
    assert "container gone is not running" in result.status["message"]


async def test_unsupported_protocols_get_403_with_accepted_versions(
    server: StreamingServer,
) -> None:
    url = exec_url(server, ["echo"], stdout=True)
    with pytest.raises(UpgradeRefused) as refused:
        await SpdyExec.open(url, protocols=("v9.channel.k8s.io",))
    assert refused.value.status == 403
    assert refused.value.headers["x-accepted-stream-protocol-versions"] == [
        "v4.channel.k8s.io",
        "v3.channel.k8s.io",
        "v2.channel.k8s.io",
        "channel.k8s.io",
    ]


async def test_missing_protocol_header_is_400(server: StreamingServer) -> None:
    url = exec_url(server, ["echo"], stdout=True)
    with pytest.raises(UpgradeRefused) as refused:
        await http_upgrade(url, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")])
    assert refused.value.status == 400


async def test_token_is_single_use(server: StreamingServer) -> None:
    url = exec_url(server, ["echo", "once"], stdout=True)
    result = await (await SpdyExec.open(url, stderr=False)).wait()
    assert result.stdout == b"once"
    with pytest.raises(UpgradeRefused) as refused:
        await SpdyExec.open(url, stderr=False)
    assert refused.value.status == 404


async def test_unknown_route_and_token_are_404(server: StreamingServer) -> None:
    url = exec_url(server, ["echo"], stdout=True)
    for bad in (url.replace("/exec/", "/attach/"), url.replace("/exec/", "/nope/"), url + "x"):
        with pytest.raises(UpgradeRefused) as refused:
            await SpdyExec.open(bad, stderr=False)
        assert refused.value.status == 404
    # None of those spent the token.
    result = await (await SpdyExec.open(url, stderr=False)).wait()
    assert result.exit_code == 0


async def test_a_failed_handshake_does_not_spend_the_token(server: StreamingServer) -> None:
    url = exec_url(server, ["echo", "later"], stdout=True)
    with pytest.raises(UpgradeRefused):
        await SpdyExec.open(url, protocols=("v9.channel.k8s.io",))
    with pytest.raises(UpgradeRefused):
        await http_upgrade(url, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")])
    result = await (await SpdyExec.open(url, stderr=False)).wait()
    assert result.stdout == b"later"


async def test_expired_token_is_refused() -> None:
    now = [0.0]
    tokens = TokenCache(clock=lambda: now[0])
    server = StreamingServer(StreamingConfig(port=0), FakeRuntime(), tokens=tokens)
    await server.start()
    try:
        url = exec_url(server, ["echo"], stdout=True)
        now[0] += 61
        with pytest.raises(UpgradeRefused) as refused:
            await SpdyExec.open(url, stderr=False)
        assert refused.value.status == 404
    finally:
        await server.stop()


async def test_attach(server: StreamingServer) -> None:
    request = cri.AttachRequest(container_id="c1", stdin=True, stdout=True)
    session = await SpdyExec.open(server.get_attach(request).url, stdin=True, stderr=False)
    await session.write(b"hello")
    await session.read_until(b"HELLO")
    await session.close_stdin()
    result = await session.wait()
    assert result.stdout == b"HELLO" and result.exit_code == 0


async def test_websocket_v5_exec(server: StreamingServer) -> None:
    url = exec_url(server, ["cat"], stdin=True, stdout=True, stderr=True)
    session = await WsExec.open(url)
    session.write(b"abc")
    await session.read_until(b"abc")
    session.close_stdin()
    result = await session.wait()
    assert result.stdout == b"abc"
    assert json.loads(result.error)["status"] == "Success"
    assert session.client.close_code == 1000


async def test_websocket_v5_exit_code_and_resize(server: StreamingServer) -> None:
    result = await (
        await WsExec.open(exec_url(server, ["fail", "7"], stdout=True, stderr=True))
    ).wait()
    assert (result.stdout, result.stderr, result.exit_code) == (b"out", b"err", 7)
    url = exec_url(server, ["sizes"], stdin=True, stdout=True, tty=True)
    session = await WsExec.open(url)
    session.resize(10, 20)
    await session.read_until(b"10x20\n")
    session.resize(0, 0)
    assert (await session.wait()).stdout == b"10x20\n0x0\n"


async def test_websocket_without_v5_is_refused(server: StreamingServer) -> None:
    url = exec_url(server, ["echo"], stdout=True)
    with pytest.raises(UpgradeRefused) as refused:
        await WsClient.connect(url, "v4.channel.k8s.io")
    assert refused.value.status == 403


def forward_url(server: StreamingServer, ports: Sequence[int] = ()) -> str:
    request = cri.PortForwardRequest(pod_sandbox_id="pod1", port=list(ports))
    return server.get_port_forward(request).url


async def _forward(pf: SpdyPortForward, port: int, payload: bytes) -> tuple[bytes, bytes]:
    data, error = await pf.connect(port)
    await data.write(payload)
    await data.close()
    return await read_all(data), await read_all(error)


@pytest.mark.parametrize("tunnel", [False, True], ids=["spdy", "websocket-tunnel"])
async def test_port_forward_connections_at_once(server: StreamingServer, tunnel: bool) -> None:
    url = forward_url(server)
    pf = await (SpdyPortForward.open_tunnel(url) if tunnel else SpdyPortForward.open(url))
    payloads = [b"x" * 100_000, b"y" * 5]
    results = await asyncio.gather(*(_forward(pf, 80 + i, p) for i, p in enumerate(payloads)))
    assert results[0] == (b"80:100000:" + b"x" * 16, b"")
    assert results[1] == (b"81:5:yyyyy", b"")
    failed = await _forward(pf, 1, b"")
    assert failed[0] == b"" and b"nothing listens on port 1" in failed[1]
    await pf.close()


async def test_port_forward_respects_the_requested_ports(server: StreamingServer) -> None:
    pf = await SpdyPortForward.open(forward_url(server, [80]))
    assert (await _forward(pf, 81, b"a"))[1].endswith(b"port 81 is not forwarded by this session")
    assert (await _forward(pf, 80, b"a"))[0] == b"80:1:a"
    await pf.close()


async def test_malformed_frame_closes_only_that_connection(server: StreamingServer) -> None:
    slow = await SpdyExec.open(
        exec_url(server, ["cat"], stdin=True, stdout=True), stdin=True, stderr=False
    )
    victim = await SpdyExec.open(
        exec_url(server, ["cat"], stdin=True, stdout=True), stdin=True, stderr=False
    )
    # A control frame of SPDY version 2: the server must give up on this connection.
    victim.session.transport.write(b"\x80\x02\x00\x01\x00\x00\x00\x00")
    await victim.session.transport.drain()
    await asyncio.wait_for(victim.session.closed.wait(), 30)
    await slow.write(b"still here")
    await slow.read_until(b"still here")
    await slow.close_stdin()
    assert (await slow.wait()).exit_code == 0
