"""Container and pod stats, the basics: who they describe, that they are measured, filters.

How much a workload uses and how each backend measures it are the docker
adapter's own tests (test_docker_stats.py); here only what every adapter
must answer.
"""

from __future__ import annotations

import grpc

from crictl_tests.dockerpods import Pods, rpc_code, wait_for
from pycrid.api.cri import api_pb2 as cri


def test_container_and_pod_stats_describe_and_measure_them(pods: Pods) -> None:
    config = pods.sandbox_config("stats", labels={"app": "stats"})
    sandbox_id = pods.run(config)
    running = pods.run_container(
        sandbox_id, pods.container_config("sleeper", command=["sleep", "3600"], labels={"k": "v"})
    )
    created = pods.create(sandbox_id, pods.container_config("created"))

    def container_stats() -> cri.ContainerStats:
        request = cri.ContainerStatsRequest(container_id=running[:13])
        return pods.rt.ContainerStats(request).stats

    stats = container_stats()
    assert stats.attributes.id == running
    assert stats.attributes.metadata.name == "sleeper"
    assert dict(stats.attributes.labels) == {"k": "v"}
    assert stats.cpu.timestamp > 0 and stats.memory.timestamp > 0
    # Measured while the container runs: wait for what a sample may not show yet.
    wait_for(lambda: container_stats().memory.working_set_bytes.value, "its memory")
    wait_for(lambda: container_stats().writable_layer.fs_id.mountpoint, "its writable layer")

    def listed(**fields: object) -> dict[str, cri.ContainerStats]:
        request = cri.ListContainerStatsRequest(filter=cri.ContainerStatsFilter(**fields))
        return {s.attributes.id: s for s in pods.rt.ListContainerStats(request).stats}

    in_pod = listed(pod_sandbox_id=sandbox_id[:13])
    assert set(in_pod) == {running, created}
    assert not in_pod[created].HasField("cpu")  # never started: nothing to measure
    assert set(listed(id=running[:13])) == {running}
    assert set(listed(label_selector={"k": "v"})) >= {running}

    pod_stats = pods.rt.PodSandboxStats(
        cri.PodSandboxStatsRequest(pod_sandbox_id=sandbox_id[:13])
    ).stats
    assert pod_stats.attributes.id == sandbox_id
    assert pod_stats.attributes.metadata == config.metadata
    assert dict(pod_stats.attributes.labels) == {"app": "stats"}
    assert pod_stats.linux.cpu.timestamp > 0 and pod_stats.linux.memory.timestamp > 0
    assert running in {c.attributes.id for c in pod_stats.linux.containers}
    pods_listed = pods.rt.ListPodSandboxStats(
        cri.ListPodSandboxStatsRequest(filter=cri.PodSandboxStatsFilter(id=sandbox_id[:13]))
    ).stats
    assert [s.attributes.id for s in pods_listed] == [sandbox_id]


def test_stats_of_unknown_ids_are_not_found(pods: Pods) -> None:
    unknown = "f" * 64

    def ask_container() -> object:
        return pods.rt.ContainerStats(cri.ContainerStatsRequest(container_id=unknown))

    def ask_pod() -> object:
        return pods.rt.PodSandboxStats(cri.PodSandboxStatsRequest(pod_sandbox_id=unknown))

    assert rpc_code(ask_container) == grpc.StatusCode.NOT_FOUND
    assert rpc_code(ask_pod) == grpc.StatusCode.NOT_FOUND
