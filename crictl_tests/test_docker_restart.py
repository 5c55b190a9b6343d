"""The docker adapter after ``kill -9`` of the daemon and a restart."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import grpc

from crictl_tests import dockerpods
from crictl_tests.dockerpods import Pods, docker_inspect, rpc_code
from crictl_tests.harness import BUSYBOX_IMAGE, Daemon
from pycrid.api.cri import api_pb2 as cri


def _views(pods: Pods, sandbox_ids: list[str], container_ids: list[str]) -> dict:
    """Everything the CRI says about the objects, minus nothing."""
    rt = pods.rt
    return {
        "pods": sorted(
            (p.SerializeToString(deterministic=True))
            for p in rt.ListPodSandbox(cri.ListPodSandboxRequest()).items
        ),
        "containers": sorted(
            (c.SerializeToString(deterministic=True))
            for c in rt.ListContainers(cri.ListContainersRequest()).containers
        ),
        "pod status": [
            pods.sandbox_status(s).status.SerializeToString(deterministic=True) for s in sandbox_ids
        ],
        "container status": [
            pods.status(c).status.SerializeToString(deterministic=True) for c in container_ids
        ],
    }


def test_kill_9_and_restart_keeps_pods_containers_and_network(
    docker_engine: None, test_registry: None, daemon_factory: Callable[..., Daemon]
) -> None:
    with dockerpods.cni_pods(daemon_factory, BUSYBOX_IMAGE) as pods:
        daemon, ipam_dir = pods.daemon, pods.ipam_dir
        ready = pods.run(pods.sandbox_config("ready"))
        stopped = pods.run(pods.sandbox_config("stopped"))
        running = pods.run_container(ready, pods.container_config("running"))
        exited = pods.run_container(
            ready, pods.container_config("exited", command=["sh", "-c", "exit 7"])
        )
        created = pods.create(ready, pods.container_config("created"))
        pods.wait_exited(exited)
        pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=stopped))
        pid = docker_inspect(running)["State"]["Pid"]
        containers = [running, exited, created]
        before = _views(pods, [ready, stopped], containers)

        daemon.kill()
        daemon.start()

        assert _views(pods, [ready, stopped], containers) == before
        assert docker_inspect(running)["State"]["Pid"] == pid
        assert pods.status(running[:13]).status.state == cri.CONTAINER_RUNNING
        assert pods.status(exited).status.exit_code == 7
        assert pods.exec(running, "echo", "alive").stdout == b"alive\n"
        pod_ip = pods.sandbox_status(ready).status.network.ip
        assert dockerpods.ip_allocations(ipam_dir) == [pod_ip]

        # The recovered objects carry on through their whole lifecycle.
        pods.start(created)
        assert pods.status(created).status.state == cri.CONTAINER_RUNNING
        pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=ready))
        assert dockerpods.ip_allocations(ipam_dir) == []
        assert pods.sandbox_status(ready).status.state == cri.SANDBOX_NOTREADY
    assert rpc_code(lambda: pods.sandbox_status(ready)) == grpc.StatusCode.NOT_FOUND


def test_restart_releases_the_network_of_a_pod_removed_behind_its_back(
    docker_engine: None, test_registry: None, daemon_factory: Callable[..., Daemon]
) -> None:
    with dockerpods.cni_pods(daemon_factory) as pods:
        daemon, ipam_dir = pods.daemon, pods.ipam_dir
        sandbox_id = pods.run(pods.sandbox_config("orphan"))
        assert len(dockerpods.ip_allocations(ipam_dir)) == 1
        daemon.kill()
        subprocess.run(["docker", "rm", "-f", sandbox_id], check=True, capture_output=True)
        daemon.start()
        assert dockerpods.ip_allocations(ipam_dir) == []
        assert rpc_code(lambda: pods.sandbox_status(sandbox_id)) == grpc.StatusCode.NOT_FOUND
        pods.sandboxes.clear()
