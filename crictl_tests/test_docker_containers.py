"""Containers on the docker adapter, as Docker holds them.

Container lifecycle, states, exits, users, mounts, security and bad requests
over the CRI are in the contract suite (crictl_tests/contract/test_containers.py),
run on both adapters; here is what only Docker shows.
"""

from __future__ import annotations

from crictl_tests.dockerpods import Pods, docker_inspect
from pycrid.api.cri import api_pb2 as cri

MIB = 1024 * 1024


def test_pid_namespace_modes_join_the_pause_container(pods: Pods) -> None:
    sandbox_id = pods.run()

    def with_pid(name: str, mode: int) -> str:
        security = cri.LinuxContainerSecurityContext(
            namespace_options=cri.NamespaceOption(pid=mode)
        )
        return pods.run_container(
            sandbox_id,
            pods.container_config(name, linux=cri.LinuxContainerConfig(security_context=security)),
        )

    shared = with_pid("shared", cri.POD)
    own = with_pid("own", cri.CONTAINER)
    assert docker_inspect(shared)["HostConfig"]["PidMode"] == f"container:{sandbox_id}"
    assert docker_inspect(own)["HostConfig"]["PidMode"] == ""
    assert docker_inspect(own)["HostConfig"]["IpcMode"] == f"container:{sandbox_id}"


def test_updated_resources_reach_dockers_host_config(pods: Pods) -> None:
    sandbox_id = pods.run()
    container_id = pods.run_container(sandbox_id, pods.container_config("resize"))
    update = cri.LinuxContainerResources(
        cpu_period=100000, cpu_quota=50000, cpu_shares=512, memory_limit_in_bytes=64 * MIB
    )
    pods.rt.UpdateContainerResources(
        cri.UpdateContainerResourcesRequest(container_id=container_id, linux=update)
    )
    host_config = docker_inspect(container_id)["HostConfig"]
    assert host_config["CpuQuota"] == 50000 and host_config["CpuShares"] == 512
    assert host_config["Memory"] == 64 * MIB
