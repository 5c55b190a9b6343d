"""CRI container logs on the docker adapter, on a real dockerd.

The CRI log file, its format, crictl logs and ReopenContainerLog are in the
contract suite (crictl_tests/contract/test_logs.py), run on both adapters.
Here: how Docker's output is cut into lines, logs continued across ``kill -9``
of the daemon, and ``LogCopiers`` driven directly on containers made with the
docker SDK (labelled pycrid-test=logs and removed afterwards), for what the
daemon cannot be made to show on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest

from crictl_tests.dockerpods import Pods, files_under, open_pods, wait_for
from crictl_tests.harness import BUSYBOX_IMAGE, LOCAL_REGISTRY, Daemon
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.execsync import exec_sync
from pycrid.adapters.docker.logs import LogCopiers
from pycrid.adapters.node import crilog
from pycrid.api.cri import api_pb2 as cri

LOCAL_BUSYBOX = BUSYBOX_IMAGE.replace("registry.k8s.io", LOCAL_REGISTRY)
WAIT = 60.0  # upper bound of every wait below; tests never assert on time
COUNTER = "i=0; while [ $i -lt {n} ]; do echo $i; echo $i >&2; i=$((i+1)); sleep 0.05; done"


def read_log(path: Path) -> list[crilog.CriLogLine]:
    return list(crilog.parse_lines(path.read_bytes())) if path.exists() else []


def counted(lines: list[crilog.CriLogLine], stream: str = "stdout") -> list[int]:
    return [int(line.message) for line in lines if line.stream == stream]


def log_bookmarks(daemon: Daemon) -> list[Path]:
    return files_under(Path(daemon.config["state_dir"]) / "docker" / "logs")


@pytest.fixture
def pods(docker_daemon: Daemon) -> Iterator[Pods]:
    with open_pods(docker_daemon, BUSYBOX_IMAGE) as pods:
        yield pods
    assert log_bookmarks(docker_daemon) == []


def run_logged(pods: Pods, script: str, **fields: object) -> tuple[str, Path]:
    """Start a container running ``script`` in a new pod; (its ID, its log path)."""
    sandbox_id = pods.run()
    config = pods.container_config("logged", command=["sh", "-c", script], **fields)
    container_id = pods.run_container(sandbox_id, config)
    return container_id, Path(pods.status(container_id).status.log_path)


def test_long_lines_come_in_dockers_16k_pieces(pods: Pods) -> None:
    container_id, log_path = run_logged(
        pods, "echo hello; head -c 40000 /dev/zero | tr '\\0' a; echo; echo; printf 'no newline'"
    )
    pods.wait_exited(container_id)
    # Docker passes a line on in pieces of 16 KiB at most, each written as P.
    stdout = [line for line in read_log(log_path) if line.stream == "stdout"]
    assert [(line.tag, len(line.message)) for line in stdout] == [
        ("F", 5),
        ("P", 16384),
        ("P", 16384),
        ("F", 40000 - 2 * 16384),
        ("F", 0),
        ("P", 10),
    ]


def test_logs_continue_after_the_daemon_is_killed(daemon_factory: Callable[..., Daemon]) -> None:
    daemon = daemon_factory("docker")
    pods = Pods(daemon)
    try:
        pods.pull(BUSYBOX_IMAGE)
        count = 300
        container_id, log_path = run_logged(pods, COUNTER.format(n=count))
        for floor in (60, 150):
            wait_for(lambda floor=floor: len(counted(read_log(log_path))) >= floor, "lines")
            daemon.kill()
            time.sleep(0.5)  # the container goes on printing meanwhile
            daemon.start()
        # Whether the counter is still running here depends on how fast the restarts were.
        running_or_done = (cri.CONTAINER_RUNNING, cri.CONTAINER_EXITED)
        assert pods.status(container_id).status.state in running_or_done
        assert pods.wait_exited(container_id).exit_code == 0
        wait_for(
            lambda: (
                len(counted(read_log(log_path), "stderr")) >= count
                and len(counted(read_log(log_path))) >= count
            ),
            "every line",
        )
        lines = read_log(log_path)
        assert counted(lines, "stdout") == list(range(count))
        assert counted(lines, "stderr") == list(range(count))
        assert all(line.tag == "F" for line in lines)
    finally:
        pods.close()
    assert log_bookmarks(daemon) == []


# LogCopiers on its own.


async def async_wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def api(docker_engine: None, test_registry: None) -> Iterator[docker.APIClient]:
    client = docker.APIClient(version="auto")
    try:
        client.inspect_image(LOCAL_BUSYBOX)
    except docker.errors.ImageNotFound:
        client.pull(LOCAL_BUSYBOX)
    yield client
    client.close()


@pytest.fixture
def make_container(api: docker.APIClient) -> Iterator[Callable[..., str]]:
    """Start busybox containers with the json-file driver; removed afterwards."""
    made: list[str] = []

    def make(script: str, tty: bool = False) -> str:
        host_config = api.create_host_config(
            log_config={"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}}
        )
        container = api.create_container(
            LOCAL_BUSYBOX,
            ["sh", "-c", script],
            tty=tty,
            labels={"pycrid-test": "logs"},
            host_config=host_config,
        )
        made.append(container["Id"])
        api.start(container["Id"])
        return container["Id"]

    yield make
    for container_id in made:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container_id, force=True)


async def test_shutdown_and_recover_keep_an_unfinished_line(
    docker_client: DockerClient, make_container: Callable[..., str], tmp_path: Path
) -> None:
    container_id = make_container(
        # Docker passes on an unfinished line only in chunks of 16 KiB.
        "echo first; head -c 16384 /dev/zero | tr '\\0' h; "
        "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo line; echo last"
    )
    log_path = tmp_path / "0.log"
    state = tmp_path / "state"
    first = LogCopiers(docker_client, state)
    await first.start(container_id, log_path, tty=False)

    def half_line_pending() -> bool:
        saved = json.loads(first.bookmark_path(container_id).read_bytes())
        return "stdout" in saved["pending"]

    await async_wait_until(half_line_pending, "the unfinished line in the bookmark")
    await first.close()
    assert crilog.join_lines(read_log(log_path)) == [("stdout", b"first")]
    await exec_sync(docker_client, container_id, ["touch", "/tmp/go"], 10)
    second = LogCopiers(docker_client, state)
    await second.recover(container_id, log_path, tty=False)
    await second.stop(container_id)
    lines = read_log(log_path)
    assert crilog.join_lines(lines) == [
        ("stdout", b"first"),
        ("stdout", b"h" * 16384 + b"line"),
        ("stdout", b"last"),
    ]
    assert [line.tag for line in lines] == ["F", "P", "F", "F"]
    # The copy is complete: recovering again copies nothing twice.
    await second.recover(container_id, log_path, tty=False)
    assert not second.is_copying(container_id)
    assert read_log(log_path) == lines
    await second.stop(container_id, remove=True)
    assert not second.bookmark_path(container_id).exists()
