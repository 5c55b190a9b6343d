"""CRI container logs: the file at log_directory/log_path, its format, crictl, reopening.

Every line must read as ``<RFC3339Nano> <stdout|stderr> <F|P> <message>``;
how a backend cuts long lines into P pieces is its own business, so these
tests look at the lines joined again.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import grpc

from crictl_tests.dockerpods import Pods, rpc_code, wait_for
from pycrid.adapters.node import crilog
from pycrid.api.cri import api_pb2 as cri

WAIT = 60.0
COUNTER = "i=0; while [ $i -lt {n} ]; do echo $i; echo $i >&2; i=$((i+1)); sleep 0.05; done"
CRI_LINE = re.compile(
    rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d) (stdout|stderr) [FP] "
)


def read_log(path: Path) -> list[crilog.CriLogLine]:
    return list(crilog.parse_lines(path.read_bytes())) if path.exists() else []


def counted(lines: list[crilog.CriLogLine], stream: str = "stdout") -> list[int]:
    return [int(line.message) for line in lines if line.stream == stream]


def run_logged(pods: Pods, script: str, **fields: object) -> tuple[str, Path]:
    """Start a container running ``script`` in a new pod; (its ID, its log path)."""
    sandbox = pods.sandbox_config()
    sandbox_id = pods.run(sandbox)
    config = pods.container_config("logged", command=["sh", "-c", script], **fields)
    container_id = pods.run_container(sandbox_id, config)
    log_path = pods.status(container_id).status.log_path
    assert log_path == os.path.join(sandbox.log_directory, config.log_path)
    return container_id, Path(log_path)


def test_container_output_is_a_cri_log(pods: Pods) -> None:
    container_id, log_path = run_logged(
        pods,
        "echo hello World; echo oops >&2;"
        " head -c 40000 /dev/zero | tr '\\0' a; echo; echo; printf 'no newline'",
    )
    pods.wait_exited(container_id)
    # Once ContainerStatus says EXITED the log is complete (critest reads it
    # then), down to the unfinished last line, written as P.
    raw = log_path.read_bytes()
    assert raw.endswith(b"\n")
    for line in raw.splitlines():
        assert CRI_LINE.match(line), line[:80]
    lines = read_log(log_path)
    stdout = [line for line in lines if line.stream == "stdout"]
    assert crilog.join_lines(stdout) == [
        ("stdout", b"hello World"),
        ("stdout", b"a" * 40000),
        ("stdout", b""),
        ("stdout", b"no newline"),
    ]
    assert stdout[-1].tag == "P"
    stderr = [(line.tag, line.message) for line in lines if line.stream == "stderr"]
    assert stderr == [("F", b"oops")]
    # RFC 3339 with nanoseconds; conmon writes a numeric offset where pycrid writes Z.
    first = raw.split(b" ", 1)[0].decode()
    # (Go's RFC3339Nano, as kubelet parses it: trailing zeros of the fraction dropped.)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", first)
    assert crilog.parse_timestamp(first) == lines[0].timestamp
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(stdout))


def test_the_log_is_complete_when_the_exit_is_reported(pods: Pods) -> None:
    sandbox_id = pods.run()
    for attempt in range(5):
        config = pods.container_config(
            f"echo{attempt}", command=["sh", "-c", "echo out; echo err >&2"]
        )
        container_id = pods.run_container(sandbox_id, config)
        status = pods.wait_exited(container_id)
        lines = Path(status.log_path).read_text().splitlines()
        assert [line.split(" ", 1)[1] for line in lines] in (
            ["stdout F out", "stderr F err"],
            ["stderr F err", "stdout F out"],
        )


def test_crictl_reads_the_log(pods: Pods, crictl: str) -> None:
    container_id, _ = run_logged(
        pods, "echo one; head -c 20000 /dev/zero | tr '\\0' b; echo; echo two >&2; printf three"
    )
    pods.wait_exited(container_id)
    shown = subprocess.run(
        [crictl, "--runtime-endpoint", pods.daemon.endpoint, "logs", container_id[:13]],
        capture_output=True,
        check=True,
        timeout=WAIT,
    )
    assert shown.stdout == b"one\n" + b"b" * 20000 + b"\nthree"
    assert shown.stderr.endswith(b"two\n")


def test_tty_output_is_all_stdout(pods: Pods) -> None:
    container_id, log_path = run_logged(pods, "echo out; echo err >&2; printf end", tty=True)
    pods.wait_exited(container_id)
    lines = read_log(log_path)
    assert [(line.stream, line.tag, line.message) for line in lines] == [
        ("stdout", "F", b"out\r"),
        ("stdout", "F", b"err\r"),
        ("stdout", "P", b"end"),
    ]


def test_reopen_container_log_rotates_the_file(pods: Pods) -> None:
    container_id, log_path = run_logged(pods, COUNTER.format(n=100_000))
    rotated = log_path.with_name(log_path.name + ".20260101-000000")
    wait_for(lambda: len(read_log(log_path)) >= 10, "the first lines")
    log_path.rename(rotated)
    pods.rt.ReopenContainerLog(
        cri.ReopenContainerLogRequest(container_id=container_id[:13]), timeout=WAIT
    )
    size_at_reopen = rotated.stat().st_size
    wait_for(lambda: len(read_log(log_path)) >= 10, "lines in the new file")
    assert rotated.stat().st_size == size_at_reopen
    pods.rt.StopContainer(cri.StopContainerRequest(container_id=container_id, timeout=5))
    assert rotated.stat().st_size == size_at_reopen
    for stream in ("stdout", "stderr"):
        values = counted(read_log(rotated), stream) + counted(read_log(log_path), stream)
        assert values == list(range(len(values))), stream
    # Not running: an error, and then no new file may appear.
    log_path.rename(log_path.with_name(log_path.name + ".20260101-000001"))
    code = rpc_code(
        lambda: pods.rt.ReopenContainerLog(
            cri.ReopenContainerLogRequest(container_id=container_id), timeout=WAIT
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert not log_path.exists()
