"""UpdatePodSandboxResources sets the pod cgroup's limits; CheckpointContainer says why not."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path

import grpc

from crictl_tests.dockerpods import Pods, rpc_code
from pycrid.adapters.node.cgroups import host_hierarchy
from pycrid.adapters.node.podcgroup import process_dirs
from pycrid.api.cri import api_pb2 as cri


def test_update_pod_sandbox_resources_sets_the_pod_cgroups_limits(pods: Pods) -> None:
    parent = f"/pycrid-e2e-pod-{uuid.uuid4().hex[:12]}"
    config = pods.sandbox_config("resize", linux=cri.LinuxPodSandboxConfig(cgroup_parent=parent))
    sandbox_id = pods.run(config)
    pods.run_container(sandbox_id, pods.container_config("app"))
    pid = json.loads(pods.sandbox_status(sandbox_id, verbose=True).info["info"])["pid"]
    hierarchy = host_hierarchy()
    dirs = {
        k: d.parent
        for k, d in process_dirs(hierarchy, Path(f"/proc/{pid}/cgroup").read_text()).items()
    }
    try:
        resources = cri.LinuxContainerResources(
            cpu_period=100000, cpu_quota=50000, cpu_shares=512, memory_limit_in_bytes=256 << 20
        )
        pods.rt.UpdatePodSandboxResources(
            cri.UpdatePodSandboxResourcesRequest(
                pod_sandbox_id=sandbox_id[:13], resources=resources
            )
        )
        if hierarchy.version == 1:
            assert dirs["cpu"].name == parent.strip("/")
            assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (dirs["cpu"] / "cpu.shares").read_text().strip() == "512"
            assert int((dirs["memory"] / "memory.limit_in_bytes").read_text()) == 256 << 20
        else:
            assert (dirs[""] / "cpu.max").read_text().split() == ["50000", "100000"]
            assert int((dirs[""] / "memory.max").read_text()) == 256 << 20
    finally:
        pods.remove_all()
        for directory in dirs.values():
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def test_a_pod_without_a_cgroup_of_its_own_is_refused(pods: Pods) -> None:
    sandbox_id = pods.run(pods.sandbox_config("shared"))
    pods.run(pods.sandbox_config("neighbour"))

    def update() -> object:
        return pods.rt.UpdatePodSandboxResources(
            cri.UpdatePodSandboxResourcesRequest(
                pod_sandbox_id=sandbox_id,
                resources=cri.LinuxContainerResources(memory_limit_in_bytes=256 << 20),
            )
        )

    assert rpc_code(update) == grpc.StatusCode.FAILED_PRECONDITION


def test_checkpoint_without_criu_is_unimplemented_with_the_reason(
    runtime_adapter: str, pods: Pods
) -> None:
    if runtime_adapter == "oci" and shutil.which("criu") is not None:
        return  # then the oci adapter checkpoints; not measured here
    sandbox_id = pods.run(pods.sandbox_config("checkpoint"))
    container_id = pods.run_container(sandbox_id, pods.container_config("app"))
    try:
        pods.rt.CheckpointContainer(
            cri.CheckpointContainerRequest(container_id=container_id, location="/tmp/x.tar")
        )
        raise AssertionError("CheckpointContainer succeeded without CRIU")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNIMPLEMENTED
        # The docker adapter never checkpoints; the oci adapter names what is missing.
        assert ("CRIU" if runtime_adapter == "oci" else "docker adapter") in (e.details() or "")
