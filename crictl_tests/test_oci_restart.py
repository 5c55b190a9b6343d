"""The oci adapter after ``kill -9`` of the daemon, at rest and in the middle of calls."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator

import grpc
import pytest

from crictl_tests import harness
from crictl_tests.dockerpods import Pods, ip_allocations, open_pods, rpc_code, wait_for
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from crictl_tests.test_docker_restart import _views
from pycrid.api.cri import api_pb2 as cri


@pytest.fixture
def oci_pods(test_registry: None) -> Iterator[Pods]:
    daemon = harness.start_daemon("oci")
    try:
        with open_pods(daemon, BUSYBOX_IMAGE) as pods:
            yield pods
    finally:
        daemon.stop()
        harness.remove_root(daemon)


def views(pods: Pods, sandbox_ids: list[str], container_ids: list[str], changing: str) -> dict:
    """What the CRI says of the objects, but for one container expected to change."""
    seen = _views(pods, sandbox_ids, container_ids)
    seen["containers"] = [c for c in seen["containers"] if changing.encode() not in c]
    return seen


def pid_of(pods: Pods, container_id: str) -> int:
    return int(json.loads(pods.status(container_id, verbose=True).info["info"])["pid"])


def log_lines(pods: Pods, container_id: str) -> list[str]:
    path = pods.status(container_id).status.log_path
    with open(path) as f:
        return [line.split(" ", 3)[3].rstrip("\n") for line in f]


def test_kill_9_and_restart_keep_pods_containers_logs_and_network(oci_pods: Pods) -> None:
    pods = oci_pods
    daemon, ipam_dir = pods.daemon, pods.daemon.root / "ipam"
    ready = pods.run(pods.sandbox_config("ready"))
    stopped = pods.run(pods.sandbox_config("stopped"))
    counter = pods.run_container(
        ready,
        pods.container_config(
            "counter",
            command=["sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"],
        ),
    )
    exited = pods.run_container(
        ready, pods.container_config("exited", command=["sh", "-c", "exit 7"])
    )
    late = pods.run_container(
        ready, pods.container_config("late", command=["sh", "-c", "sleep 2; exit 5"])
    )
    created = pods.create(ready, pods.container_config("created"))
    pods.wait_exited(exited)
    pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=stopped))
    pid = pid_of(pods, counter)
    containers = [counter, exited, created]
    before = views(pods, [ready, stopped], containers, late)

    daemon.kill()
    time.sleep(3)  # meanwhile "late" exits and the counter keeps writing
    daemon.start()

    assert views(pods, [ready, stopped], containers, late) == before
    assert pid_of(pods, counter) == pid
    late_status = pods.status(late).status
    assert (late_status.state, late_status.exit_code, late_status.reason) == (
        cri.CONTAINER_EXITED,
        5,
        "Error",
    )
    numbers = [int(n) for n in log_lines(pods, counter)]
    assert numbers == list(range(len(numbers))) and len(numbers) > 25  # nothing lost
    wait_for(lambda: len(log_lines(pods, counter)) > len(numbers) + 5, "the log to keep flowing")
    assert pods.exec(counter, "echo", "alive").stdout == b"alive\n"
    pod_ip = pods.sandbox_status(ready).status.network.ip
    assert ip_allocations(ipam_dir) == [pod_ip]

    # The recovered objects carry on through their whole lifecycle.
    pods.start(created)
    assert pods.status(created).status.state == cri.CONTAINER_RUNNING
    pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=ready))
    assert ip_allocations(ipam_dir) == []
    assert pods.sandbox_status(ready).status.state == cri.SANDBOX_NOTREADY


@pytest.mark.parametrize("delay", [0.0, 0.03, 0.06, 0.1, 0.2])
def test_kill_9_in_the_middle_of_run_and_create_leaves_nothing_half_made(
    oci_pods: Pods, delay: float
) -> None:
    pods = oci_pods
    daemon: Daemon = pods.daemon
    config = pods.sandbox_config("interrupted")

    def run_then_create() -> None:
        sandbox_id = pods.run(config)
        pods.create(sandbox_id, pods.container_config("c"), config)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        work = pool.submit(run_then_create)
        time.sleep(0.15 + delay)
        daemon.kill()
        codes = work.exception(timeout=60)
    assert codes is None or isinstance(codes, grpc.RpcError)
    daemon.start()
    # Whatever was finished is whole and usable; whatever was not is gone.
    for sandbox in pods.rt.ListPodSandbox(cri.ListPodSandboxRequest()).items:
        assert pods.sandbox_status(sandbox.id).status.state == cri.SANDBOX_READY
        pods.sandboxes.append(sandbox.id)
        for container in pods.rt.ListContainers(
            cri.ListContainersRequest(filter=cri.ContainerFilter(pod_sandbox_id=sandbox.id))
        ).containers:
            pods.start(container.id)
            assert pods.exec(container.id, "true").exit_code == 0
    pods.remove_all()
    assert pods.leftovers() == {}
    assert rpc_code(lambda: pods.rt.Version(cri.VersionRequest())) == grpc.StatusCode.OK


def test_removal_after_restart_leaves_nothing(oci_pods: Pods) -> None:
    pods = oci_pods
    sandbox_id = pods.run(pods.sandbox_config("removed-later"))
    pods.run_container(sandbox_id, pods.container_config("sleeper"))
    pods.daemon.kill()
    pods.daemon.start()
    pods.remove_all()
    assert pods.leftovers() == {}
