"""Exec, attach and port-forward on the docker adapter, through the daemon's URLs.

Pods and containers are made over the CRI socket; the sessions are driven by
the clients of ``server/streaming/client.py`` (SPDY/3.1 like crictl's default, and
WebSocket v5 like ``--transport websocket``). The URLs themselves, a plain
exec session and single-use tokens are in the contract suite
(crictl_tests/contract/test_streaming.py), run on both adapters.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from crictl_tests.dockerpods import Pods, pods_fixture, wait_for
from crictl_tests.harness import BUSYBOX_IMAGE, DOCKER_SOCKET, WEBSERVER_IMAGE
from pycrid.adapters.config import StreamingConfig
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.streaming import DockerStreaming
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.streaming.client import (
    SpdyExec,
    SpdyPortForward,
    UpgradeRefused,
    WsExec,
    read_all,
)
from pycrid.server.streaming.server import StreamingServer
from pycrid.server.streaming.tokens import TokenCache
from pycrid.tools.compare.streams import http_get_through_port_forward

BIG_FILE_MIB = 8


pods = pods_fixture(BUSYBOX_IMAGE, WEBSERVER_IMAGE, scope="module")


@pytest.fixture(scope="module")
def pod(pods: Pods) -> dict[str, str]:
    """One pod: a shell container, a web server with a big file, and an attachable ``sh``."""
    pod = pods.run_shell_and_web("streaming")
    web = pod["web"]
    made = pods.exec(
        web, "dd", "if=/dev/urandom", "of=/www/big", "bs=1024", f"count={BIG_FILE_MIB * 1024}"
    )
    assert made.exit_code == 0, made.stderr
    digest = pods.exec(web, "sha256sum", "/www/big").stdout.split()[0].decode()
    return {**pod, "big_sha256": digest}


def exec_url(pods: Pods, container_id: str, cmd: list[str], **flags: bool) -> str:
    request = cri.ExecRequest(container_id=container_id[:13], cmd=cmd, **flags)
    url = pods.rt.Exec(request, timeout=30).url
    assert url.startswith("http://127.0.0.1:")
    return url


async def test_interactive_tty_exec_with_resize(pods: Pods, pod: dict[str, str]) -> None:
    url = exec_url(pods, pod["shell"], ["sh"], tty=True, stdin=True, stdout=True)
    session = await SpdyExec.open(url, stdin=True, tty=True, stderr=False)
    assert session.protocol == "v4.channel.k8s.io"
    await session.resize(100, 40)
    await session.write(b"stty size; echo done-$((6*7))\n")
    output = await session.read_until(b"done-42")
    assert b"40 100" in output
    await session.resize(132, 50)
    await session.write(b"stty size; echo again-$((6*7))\n")
    assert b"50 132" in await session.read_until(b"again-42")
    await session.write(b"exit 3\n")
    result = await session.wait()
    assert result.exit_code == 3


async def test_exec_success_and_stdin_end(pods: Pods, pod: dict[str, str]) -> None:
    url = exec_url(pods, pod["shell"], ["wc", "-c"], stdin=True, stdout=True, stderr=True)
    session = await SpdyExec.open(url, stdin=True)
    await session.write(b"x" * 100_000)
    await session.close_stdin()
    result = await session.wait()
    assert result.stdout.strip() == b"100000"
    assert result.status["status"] == "Success"


async def test_websocket_v5_exec(pods: Pods, pod: dict[str, str]) -> None:
    script = "read line; echo got-$line; echo oops >&2; exit 2"
    url = exec_url(pods, pod["shell"], ["sh", "-c", script], stdin=True, stdout=True, stderr=True)
    session = await WsExec.open(url)
    session.write(b"ping\n")
    session.close_stdin()
    result = await session.wait()
    assert (result.stdout, result.stderr) == (b"got-ping\n", b"oops\n")
    assert result.exit_code == 2
    assert session.client.close_code == 1000


async def test_websocket_v5_tty_resize(pods: Pods, pod: dict[str, str]) -> None:
    url = exec_url(pods, pod["shell"], ["sh"], tty=True, stdin=True, stdout=True)
    session = await WsExec.open(url)
    session.resize(77, 33)
    session.write(b"stty size; echo ws-$((40+2))\n")
    assert b"33 77" in await session.read_until(b"ws-42")
    session.write(b"exit\n")
    assert (await session.wait()).exit_code == 0


async def test_attach_with_stdin_once(pods: Pods, pod: dict[str, str]) -> None:
    config = pods.container_config("attached", command=["sh"], stdin=True, stdin_once=True)
    container_id = pods.run_container(pod["sandbox"], config)
    request = cri.AttachRequest(container_id=container_id, stdin=True, stdout=True, stderr=True)
    session = await SpdyExec.open(pods.rt.Attach(request, timeout=30).url, stdin=True)
    await session.write(b"echo -n hello\n")
    assert await session.read_until(b"hello") == b"hello"
    await session.close_stdin()
    result = await session.wait()
    assert result.stdout == b"hello" and result.exit_code == 0
    # stdin_once: the end of the client's stdin was the end of the container's.
    status = wait_for(
        lambda: (s := pods.status(container_id).status).state == cri.CONTAINER_EXITED and s,
        "the attached shell to exit",
    )
    assert status.exit_code == 0


def forward_url(pods: Pods, sandbox_id: str) -> str:
    request = cri.PortForwardRequest(pod_sandbox_id=sandbox_id[:13])
    return pods.rt.PortForward(request, timeout=30).url


async def http_get(pf: SpdyPortForward, path: str) -> tuple[bytes, bytes]:
    """One forwarded connection to port 80: the response's (head, body)."""
    data, error = await pf.connect(80)
    await data.write(f"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
    response = await read_all(data)
    data.reset()  # as client-go does once the pod's side has ended
    assert await read_all(error) == b""
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("tunnel", [False, True], ids=["spdy", "websocket-tunnel"])
async def test_port_forward_two_connections_and_a_big_transfer(
    pods: Pods, pod: dict[str, str], tunnel: bool
) -> None:
    url = forward_url(pods, pod["sandbox"])
    pf = await (SpdyPortForward.open_tunnel(url) if tunnel else SpdyPortForward.open(url))
    try:
        (big_head, big), (page_head, page) = await asyncio.gather(
            http_get(pf, "/big"), http_get(pf, "/")
        )
    finally:
        await pf.close()
    assert b" 200 " in big_head.split(b"\r\n")[0] and b" 200 " in page_head.split(b"\r\n")[0]
    assert len(big) == BIG_FILE_MIB * 1024 * 1024
    assert hashlib.sha256(big).hexdigest() == pod["big_sha256"]
    assert b"served by busybox httpd" in page


async def test_port_forward_upload_reaches_the_pod_intact(pods: Pods, pod: dict[str, str]) -> None:
    sink = pods.run_container(
        pod["sandbox"],
        pods.container_config("sink", command=["sh", "-c", "nc -l -p 9000 > /tmp/up; sleep 3600"]),
    )
    payload = bytes(range(256)) * 4096 * BIG_FILE_MIB  # 8 MiB
    pf = await SpdyPortForward.open(forward_url(pods, pod["sandbox"]))
    try:
        for _ in range(50):  # until nc listens
            data, error = await pf.connect(9000)
            await data.write(payload)
            await data.close()
            # The pod side closes once nc has read everything: then the data stream ends.
            assert await read_all(data) == b""
            message = await read_all(error)
            if not message:
                break
            assert b"refused" in message
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("nc never listened")
    finally:
        await pf.close()
    size = pods.exec(sink, "wc", "-c", "/tmp/up").stdout.split()[0].decode()
    assert int(size) == len(payload)
    digest = pods.exec(sink, "sha256sum", "/tmp/up").stdout.split()[0].decode()
    assert digest == hashlib.sha256(payload).hexdigest()


async def test_port_forward_to_a_closed_port_reports_the_error(
    pods: Pods, pod: dict[str, str]
) -> None:
    pf = await SpdyPortForward.open(forward_url(pods, pod["sandbox"]))
    try:
        data, error = await pf.connect(12345)
        message = await read_all(error)
        assert b"error forwarding port 12345" in message and b"refused" in message
        assert await read_all(data) == b""
        _head, body = await http_get(pf, "/")  # the connection still serves others
        assert b"served by busybox httpd" in body
    finally:
        await pf.close()


async def test_expired_token_is_refused(pod: dict[str, str]) -> None:
    """A streaming server of its own, with a clock the test moves, on the real backend."""
    now = [0.0]
    client = DockerClient(f"unix://{DOCKER_SOCKET}")
    await client.connect(10)
    server = StreamingServer(
        StreamingConfig(port=0),
        DockerStreaming(client),
        tokens=TokenCache(clock=lambda: now[0]),
    )
    await server.start()
    try:

        def url(word: str) -> str:
            request = cri.ExecRequest(container_id=pod["shell"], cmd=["echo", word], stdout=True)
            return server.get_exec(request).url

        fresh, stale = url("fresh"), url("stale")
        now[0] += 59
        assert (await (await SpdyExec.open(fresh, stderr=False)).wait()).stdout == b"fresh\n"
        now[0] += 2
        with pytest.raises(UpgradeRefused) as refused:
            await SpdyExec.open(stale, stderr=False)
        assert refused.value.status == 404
    finally:
        await server.stop()
        await client.close()


async def test_malformed_frame_closes_only_that_connection(pods: Pods, pod: dict[str, str]) -> None:
    def cat_url() -> str:
        return exec_url(pods, pod["shell"], ["cat"], stdin=True, stdout=True)

    healthy = await SpdyExec.open(cat_url(), stdin=True, stderr=False)
    victim = await SpdyExec.open(cat_url(), stdin=True, stderr=False)
    # A data frame for stream 0 is a protocol error: that connection is dropped.
    victim.session.transport.write(b"\x00\x00\x00\x00\x00\x00\x00\x01x")
    await victim.session.transport.drain()
    await asyncio.wait_for(victim.session.closed.wait(), 30)
    await healthy.write(b"still alive\n")
    assert await healthy.read_until(b"still alive\n") == b"still alive\n"
    await healthy.close_stdin()
    assert (await healthy.wait()).exit_code == 0


def test_compare_drives_a_port_forward_session_at_the_returned_url(
    pods: Pods, pod: dict[str, str]
) -> None:
    seen = http_get_through_port_forward(forward_url(pods, pod["sandbox"]), 80)
    assert seen == {"status_line": "HTTP/1.1 200 OK", "error_stream": ""}
