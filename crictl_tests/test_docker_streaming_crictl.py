"""The real crictl (and critest) against the streaming server, on the docker adapter.

crictl is client-go underneath: the same SPDY/3.1 and WebSocket code that
kubelet, kubectl and critest use. Interactive sessions run crictl on a
pseudo-terminal, so that ``-t``, window sizes and SIGWINCH behave as for a user.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
import urllib.request
from collections.abc import Callable

import pytest

from crictl_tests.dockerpods import Pods, pods_fixture
from crictl_tests.harness import BUSYBOX_IMAGE, WEBSERVER_IMAGE, Daemon, critest_lock

TRANSPORTS = ["spdy", "websocket"]
TIMEOUT = 30.0


pods = pods_fixture(BUSYBOX_IMAGE, WEBSERVER_IMAGE, scope="module")


@pytest.fixture(scope="module")
def pod(pods: Pods) -> dict[str, str]:
    """A shell to exec in, beside a web server to forward a port to."""
    return pods.run_shell_and_web("crictl-streaming")


def crictl_args(crictl: str, daemon: Daemon, *args: str) -> list[str]:
    endpoint = daemon.endpoint
    return [crictl, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint, *args]


class Terminal:
    """A program on a pseudo-terminal of a given size."""

    def __init__(self, argv: list[str], rows: int, cols: int) -> None:
        self.master, slave = os.openpty()
        self.resize(rows, cols)
        self.process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.output = bytearray()

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size; the kernel tells the program with SIGWINCH."""
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the program has exited
            return False
        self.output += data
        return bool(data)

    def expect(self, pattern: str) -> re.Match[bytes]:
        deadline = time.monotonic() + TIMEOUT
        while (match := re.search(pattern.encode(), self.output)) is None:
            if time.monotonic() > deadline or not self._read(0.2):
                raise AssertionError(f"no {pattern!r} in {bytes(self.output)!r}")
        return match

    def wait(self) -> int:
        deadline = time.monotonic() + TIMEOUT
        while self._read(0.2) and time.monotonic() < deadline:
            pass
        return self.process.wait(TIMEOUT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crictl_exec(pods: Pods, pod: dict[str, str], crictl: str, transport: str) -> None:
    script = "echo out; echo err >&2; exit 3"
    argv = crictl_args(
        crictl, pods.daemon, "exec", "-r", transport, pod["shell"][:13], "sh", "-c", script
    )
    done = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    assert done.stdout == b"out\n"
    assert b"err\n" in done.stderr
    assert b"command terminated with exit code 3" in done.stderr
    assert done.returncode != 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crictl_exec_interactive_tty(
    pods: Pods, pod: dict[str, str], crictl: str, transport: str
) -> None:
    argv = crictl_args(crictl, pods.daemon, "exec", "-it", "-r", transport, pod["shell"][:13], "sh")
    terminal = Terminal(argv, rows=30, cols=100)
    try:
        terminal.expect(r"# ")
        terminal.type("stty size; echo mark-$((6*7))\n")
        assert terminal.expect(r"(\d+ \d+)\s+mark-42").group(1) == b"30 100"
        terminal.resize(40, 120)
        # The new size travels on its own stream, beside the typed text: ask
        # until it has arrived.
        for attempt in range(50):
            terminal.type(f"stty size; echo size-{attempt}-done\n")
            size = terminal.expect(rf"(\d+ \d+)\s+size-{attempt}-done").group(1)
            if size == b"40 120":
                break
            time.sleep(0.1)
        assert size == b"40 120"
        terminal.type("exit 4\n")
        assert terminal.wait() != 0
        assert b"command terminated with exit code 4" in terminal.output
    finally:
        terminal.close()


def test_crictl_attach(pods: Pods, pod: dict[str, str], crictl: str) -> None:
    config = pods.container_config(
        "attach-me", command=["sh"], stdin=True, stdin_once=True, tty=True
    )
    container_id = pods.run_container(pod["sandbox"], config)
    argv = crictl_args(crictl, pods.daemon, "attach", "-it", container_id[:13])
    terminal = Terminal(argv, rows=25, cols=90)
    try:
        terminal.type("stty size; echo attached-$((2+3))\n")
        assert terminal.expect(r"(\d+ \d+)\s+attached-5").group(1) == b"25 90"
        terminal.type("exit\n")
        assert terminal.wait() == 0
    finally:
        terminal.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_crictl_port_forward(pods: Pods, pod: dict[str, str], crictl: str, transport: str) -> None:
    argv = crictl_args(
        crictl, pods.daemon, "port-forward", "-r", transport, pod["sandbox"][:13], "0:80"
    )
    forwarder = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert forwarder.stdout is not None
        line = forwarder.stdout.readline().decode()
        match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+) -> 80", line)
        assert match, line
        url = f"http://127.0.0.1:{match.group(1)}/"
        for _ in range(2):  # one session serves connection after connection
            with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
                assert b"served by busybox httpd" in response.read()
    finally:
        forwarder.terminate()
        forwarder.wait(TIMEOUT)


def run_streaming_specs(critest: str, endpoint: str, websocket: bool) -> None:
    flags = ["-websocket-exec", "-websocket-attach", "-websocket-portforward"] if websocket else []
    with critest_lock():
        done = subprocess.run(
            [critest, "-runtime-endpoint", endpoint, "-image-endpoint", endpoint,
             "-ginkgo.focus", "Streaming", "-ginkgo.no-color", *flags],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"SUCCESS! -- [1-9]\d* Passed \| 0 Failed", done.stdout), done.stdout[-3000:]


@pytest.mark.parametrize("websocket", [False, True], ids=["spdy", "websocket"])
def test_critest_streaming_specs(docker_daemon: Daemon, critest: str, websocket: bool) -> None:
    """critest's own streaming conformance specs (exec, attach, port-forward)."""
    run_streaming_specs(critest, docker_daemon.endpoint, websocket)


@pytest.mark.parametrize("websocket", [False, True], ids=["spdy", "websocket"])
def test_critest_streaming_specs_on_the_oci_adapter(
    test_registry: None, daemon_factory: Callable[..., Daemon], critest: str, websocket: bool
) -> None:
    """The same specs on the oci adapter: exec through runc, attach through conmon."""
    run_streaming_specs(critest, daemon_factory("oci").endpoint, websocket)
