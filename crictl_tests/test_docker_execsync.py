"""exec_sync of the docker adapter on its own, on a real dockerd.

ExecSync over the CRI (output, exit codes, timeouts) is in the contract suite
(crictl_tests/contract/test_execsync.py), run on both adapters. These tests
call ``exec_sync`` directly, in a container made with the docker SDK, for what
the CRI cannot set: a smaller output cap, and the deadline of the call on its
own.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import docker
import pytest

from crictl_tests.harness import BUSYBOX_IMAGE, LOCAL_REGISTRY
from pycrid.adapters import errors
from pycrid.adapters.deadline import call_deadline
from pycrid.adapters.docker.client import DockerClient
from pycrid.adapters.docker.execsync import exec_sync

LOCAL_BUSYBOX = BUSYBOX_IMAGE.replace("registry.k8s.io", LOCAL_REGISTRY)


@pytest.fixture(scope="module")
def container_id(docker_engine: None, test_registry: None) -> Iterator[str]:
    api = docker.APIClient(version="auto")
    try:
        api.inspect_image(LOCAL_BUSYBOX)
    except docker.errors.ImageNotFound:
        api.pull(LOCAL_BUSYBOX)
    # With an init that reaps orphans, as a pod's shared PID namespace has.
    host_config = api.create_host_config(init=True)
    container = api.create_container(
        LOCAL_BUSYBOX,
        ["tail", "-f", "/dev/null"],
        labels={"pycrid-test": "logs"},
        host_config=host_config,
    )
    try:
        api.start(container["Id"])
        yield container["Id"]
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container["Id"], force=True)
        api.close()


async def sleeps_in(client: DockerClient, container_id: str) -> bytes:
    script = "cat /proc/[0-9]*/comm 2>/dev/null | grep -x sleep || true"
    return (await exec_sync(client, container_id, ["sh", "-c", script], 10)).stdout


async def test_output_beyond_the_cap_is_dropped_but_drained(
    docker_client: DockerClient, container_id: str
) -> None:
    script = "echo first >&2; head -c 100000 /dev/zero; echo late >&2"
    response = await exec_sync(
        docker_client, container_id, ["sh", "-c", script], 30, max_output=1000
    )
    # Both streams together are kept to the cap (Docker interleaves them as
    # it likes); the command ran to its end.
    assert len(response.stdout) + len(response.stderr) == 1000
    assert set(response.stdout) <= {0} and response.exit_code == 0


async def test_call_deadline_bounds_a_command_without_timeout(
    docker_client: DockerClient, container_id: str
) -> None:
    token = call_deadline.set(time.monotonic() + 1.5)
    try:
        with pytest.raises(errors.DeadlineExceeded, match="deadline"):
            await exec_sync(docker_client, container_id, ["sleep", "600"], 0)
    finally:
        call_deadline.reset(token)
    assert await sleeps_in(docker_client, container_id) == b""
