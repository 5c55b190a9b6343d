"""Exec, Attach and PortForward: the URLs the daemon hands out, and a session on one.

The sessions are driven by the SPDY/3.1 client of ``server/streaming/client.py``, as
crictl and kubelet would; the many ways of using a session are the docker
adapter's streaming tests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from crictl_tests.dockerpods import Pods, open_pods
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.streaming.client import SpdyExec, UpgradeRefused

# An absolute URL on the loopback streaming server, ending in a single-use token.
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/(exec|attach|portforward)/([^/?#]+)")


@pytest.fixture(scope="module")
def pod(runtime_daemon: Daemon) -> Iterator[tuple[Pods, dict[str, str]]]:
    """A pod with a shell to exec in and a shell waiting on stdin to attach to."""
    with open_pods(runtime_daemon, BUSYBOX_IMAGE) as pods:
        sandbox_id = pods.run(pods.sandbox_config("streaming"))
        shell = pods.run_container(sandbox_id, pods.container_config("shell"))
        attachable = pods.run_container(
            sandbox_id, pods.container_config("attachable", command=["sh"], stdin=True)
        )
        yield pods, {"sandbox": sandbox_id, "shell": shell, "attachable": attachable}


def exec_url(pods: Pods, container_id: str, cmd: list[str], **flags: bool) -> str:
    request = cri.ExecRequest(container_id=container_id[:13], cmd=cmd, **flags)
    return pods.rt.Exec(request, timeout=30).url


def test_exec_attach_and_port_forward_urls(pod: tuple[Pods, dict[str, str]]) -> None:
    pods, ids = pod
    attach = cri.AttachRequest(container_id=ids["attachable"][:13], stdin=True, stdout=True)
    forward = cri.PortForwardRequest(pod_sandbox_id=ids["sandbox"][:13], port=[80])
    urls = [
        exec_url(pods, ids["shell"], ["true"], stdout=True),
        exec_url(pods, ids["shell"], ["true"], stdout=True),
        pods.rt.Attach(attach, timeout=30).url,
        pods.rt.PortForward(forward, timeout=30).url,
    ]
    matches = [URL.fullmatch(url) for url in urls]
    assert all(matches), urls
    kinds = [m.group(2) for m in matches if m]
    assert kinds == ["exec", "exec", "attach", "portforward"]
    assert len({m.group(1) for m in matches if m}) == 1  # one streaming server
    tokens = [m.group(3) for m in matches if m]
    assert len(set(tokens)) == len(tokens)  # every call its own token


async def test_exec_separates_stdout_and_stderr_and_reports_exit_code(
    pod: tuple[Pods, dict[str, str]],
) -> None:
    pods, ids = pod
    script = "echo out; echo err >&2; exit 7"
    url = exec_url(pods, ids["shell"], ["sh", "-c", script], stdout=True, stderr=True)
    result = await (await SpdyExec.open(url)).wait()
    assert (result.stdout, result.stderr) == (b"out\n", b"err\n")
    assert result.status["reason"] == "NonZeroExitCode"
    assert result.exit_code == 7


async def test_reused_token_is_refused(pod: tuple[Pods, dict[str, str]]) -> None:
    pods, ids = pod
    url = exec_url(pods, ids["shell"], ["true"], stdout=True)
    assert (await (await SpdyExec.open(url, stderr=False)).wait()).exit_code == 0
    with pytest.raises(UpgradeRefused) as refused:
        await SpdyExec.open(url, stderr=False)
    assert refused.value.status == 404
