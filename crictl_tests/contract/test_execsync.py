"""ExecSync: output, exit codes, timeouts (DEADLINE_EXCEEDED, the command killed).

The container's main process is not ``sleep``, so the ``sleep`` processes in
it are the ones the tests started; the pod shares its PID namespace, whose init
(pause) reaps orphans.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from crictl_tests.dockerpods import Pods, open_pods
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from pycrid.api.cri import api_pb2 as cri


@pytest.fixture(scope="module")
def pod(runtime_daemon: Daemon) -> Iterator[tuple[Pods, str]]:
    """A pod with one long-running container: (the pods helper, its ID)."""
    with open_pods(runtime_daemon, BUSYBOX_IMAGE) as pods:
        sandbox_id = pods.run()
        config = pods.container_config("exec", command=["tail", "-f", "/dev/null"])
        yield pods, pods.run_container(sandbox_id, config)


def run(pod: tuple[Pods, str], *cmd: str, timeout: int = 20) -> cri.ExecSyncResponse:
    pods, container_id = pod
    return pods.exec(container_id, *cmd, timeout=timeout)


def sleep_processes(pod: tuple[Pods, str]) -> list[tuple[int, str]]:
    """(pid, state) of every ``sleep`` in the pod (the image has no pgrep)."""
    response = run(pod, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null")
    found = []
    for line in response.stdout.decode().splitlines():
        pid, rest = line.split(" ", 1)
        name, fields = rest[1:].rsplit(") ", 1)
        if name == "sleep":
            found.append((int(pid), fields.split()[0]))
    return found


def test_output_and_exit_codes(pod: tuple[Pods, str]) -> None:
    response = run(pod, "echo", "-n", "hello")
    assert (response.stdout, response.stderr, response.exit_code) == (b"hello", b"", 0)
    assert run(pod, "sh", "-c", "exit 3").exit_code == 3
    assert run(pod, "/no/such/binary").exit_code != 0


def test_stdout_and_stderr_are_kept_apart(pod: tuple[Pods, str]) -> None:
    response = run(pod, "sh", "-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2")
    assert (response.stdout, response.stderr) == (b"out1\nout2\n", b"err1\nerr2\n")


def test_large_output_is_complete(pod: tuple[Pods, str]) -> None:
    response = run(pod, "sh", "-c", "head -c 3000000 /dev/zero; head -c 1000 /dev/zero >&2")
    assert (len(response.stdout), len(response.stderr)) == (3_000_000, 1000)


def test_timeout_kills_the_command(pod: tuple[Pods, str]) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        run(pod, "sleep", "600", timeout=1)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert sleep_processes(pod) == []


def test_timeout_kills_the_children_too(pod: tuple[Pods, str]) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        run(pod, "sh", "-c", "sleep 601 & sleep 602 & sleep 603", timeout=1)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert sleep_processes(pod) == []


def test_exec_in_an_exited_container_fails(pod: tuple[Pods, str]) -> None:
    pods, _ = pod
    sandbox_id = pods.run()
    container_id = pods.run_container(sandbox_id, pods.container_config("done", command=["true"]))
    pods.wait_exited(container_id)
    with pytest.raises(grpc.RpcError) as failure:
        pods.exec(container_id, "true")
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
