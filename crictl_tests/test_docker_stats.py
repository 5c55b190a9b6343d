"""Container and pod stats on the docker adapter, through the daemon's CRI socket."""

from __future__ import annotations

import contextlib
import glob
import os
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from crictl_tests.dockerpods import Pods, fetch, wait_for
from crictl_tests.harness import WEBSERVER_IMAGE
from pycrid.api.cri import api_pb2 as cri

MIB = 1024 * 1024
HELD = 24 * MIB
# Holds HELD bytes in a shell variable, then keeps one CPU busy.
ALLOCATE_AND_SPIN = f"x=$(head -c {HELD} /dev/zero | tr '\\0' a); while :; do :; done"
WAIT = 30.0  # for a measured value to reach what a test asserts of it
S = TypeVar("S")


def container_stats(pods: Pods, container_id: str) -> cri.ContainerStats:
    return pods.rt.ContainerStats(
        cri.ContainerStatsRequest(container_id=container_id[:13]), timeout=30
    ).stats


def listed(pods: Pods, **fields: object) -> dict[str, cri.ContainerStats]:
    response = pods.rt.ListContainerStats(
        cri.ListContainerStatsRequest(filter=cri.ContainerStatsFilter(**fields)), timeout=30
    )
    return {s.attributes.id: s for s in response.stats}


def pod_stats(pods: Pods, sandbox_id: str) -> cri.PodSandboxStats:
    return pods.rt.PodSandboxStats(
        cri.PodSandboxStatsRequest(pod_sandbox_id=sandbox_id[:13]), timeout=30
    ).stats


def listed_pods(pods: Pods, **fields: object) -> dict[str, cri.PodSandboxStats]:
    response = pods.rt.ListPodSandboxStats(
        cri.ListPodSandboxStatsRequest(filter=cri.PodSandboxStatsFilter(**fields)), timeout=30
    )
    return {s.attributes.id: s for s in response.stats}


def measured(read: Callable[[], S], condition: Callable[[S], bool], what: str) -> S:
    """The first stats ``read`` returns that meet ``condition``.

    Usage is measured while the workload runs, so a test waits for what it
    asserts of a measured value instead of asserting it of the first sample.
    """
    deadline = time.monotonic() + WAIT
    while True:
        stats = read()
        if condition(stats):
            return stats
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last seen:\n{stats}")
        time.sleep(0.1)


def holding(memory: cri.MemoryUsage, size: int) -> bool:
    """True when both the working set and the RSS reach ``size``."""
    return memory.working_set_bytes.value >= size and memory.rss_bytes.value >= size


def test_running_container_shows_its_memory_and_growing_cpu(pods: Pods) -> None:
    sandbox_id = pods.run()
    config = pods.container_config(
        "spinner", command=["sh", "-c", ALLOCATE_AND_SPIN], labels={"k": "v"}
    )
    config.annotations["note"] = "stats"
    container_id = pods.run_container(sandbox_id, config)

    stats = measured(
        lambda: container_stats(pods, container_id),
        lambda s: (
            holding(s.memory, HELD)
            and s.memory.page_faults.value > 0
            and s.cpu.usage_core_nano_seconds.value > 0
        ),
        f"the container to hold {HELD // MIB} MiB and to use CPU",
    )
    assert stats.attributes.id == container_id
    assert stats.attributes.metadata.name == "spinner"
    assert dict(stats.attributes.labels) == {"k": "v"}
    assert dict(stats.attributes.annotations) == {"note": "stats"}
    assert stats.cpu.timestamp > 0 and stats.memory.timestamp > 0
    memory = stats.memory
    assert memory.usage_bytes.value >= memory.working_set_bytes.value  # one sample's parts
    assert not memory.HasField("available_bytes")  # no limit

    first = stats.cpu.usage_core_nano_seconds.value
    measured(
        lambda: container_stats(pods, container_id),
        lambda s: s.cpu.usage_core_nano_seconds.value > first,
        "the CPU usage to grow",
    )
    measured(
        lambda: container_stats(pods, container_id),
        lambda s: s.cpu.usage_nano_cores.value > 0,
        "a CPU rate",
    )

    # The writable layer is measured in the background; its first size may come later.
    layer = measured(
        lambda: container_stats(pods, container_id).writable_layer,
        lambda layer: layer.HasField("used_bytes") and layer.inodes_used.value >= 1,
        "the writable layer to be measured",
    )
    assert layer.timestamp > 0 and layer.fs_id.mountpoint


def test_memory_limit_gives_available_bytes(pods: Pods) -> None:
    sandbox_id = pods.run()
    config = pods.container_config("limited", command=["sleep", "3600"])
    config.linux.resources.memory_limit_in_bytes = 64 * MIB
    container_id = pods.run_container(sandbox_id, config)
    memory = container_stats(pods, container_id).memory
    assert memory.available_bytes.value + memory.working_set_bytes.value == 64 * MIB


def test_list_filters_and_containers_that_do_not_run(pods: Pods) -> None:
    pod_a = pods.run(pods.sandbox_config("stats-a"))
    pod_b = pods.run(pods.sandbox_config("stats-b"))
    web_a = pods.run_container(pod_a, pods.container_config("web-a", labels={"tier": "web"}))
    db_a = pods.create(pod_a, pods.container_config("db-a", labels={"tier": "db"}))
    web_b = pods.run_container(pod_b, pods.container_config("web-b", labels={"tier": "web"}))

    everything = listed(pods)
    assert {web_a, db_a, web_b} <= set(everything)
    created = everything[db_a]
    assert created.attributes.metadata.name == "db-a"
    assert not created.HasField("cpu") and not created.HasField("memory")
    assert everything[web_a].cpu.timestamp > 0 and everything[web_a].memory.timestamp > 0

    assert set(listed(pods, id=web_a[:13])) == {web_a}
    assert set(listed(pods, pod_sandbox_id=pod_a[:13])) == {web_a, db_a}
    assert {web_a, web_b} <= set(listed(pods, label_selector={"tier": "web"}))
    assert db_a not in listed(pods, label_selector={"tier": "web"})
    assert set(listed(pods, pod_sandbox_id=pod_a, label_selector={"tier": "web"})) == {web_a}
    assert listed(pods, label_selector={"tier": "nothing"}) == {}
    assert listed(pods, id="0000000000000") == {}


def test_writable_layer_grows_with_written_files(pods: Pods) -> None:
    sandbox_id = pods.run()
    container_id = pods.run_container(sandbox_id, pods.container_config("writer"))
    before = container_stats(pods, container_id).writable_layer.used_bytes.value
    written = pods.exec(container_id, "dd", "if=/dev/zero", "of=/data", "bs=1M", "count=4")
    assert written.exit_code == 0, written.stderr
    wait_for(
        lambda: (
            container_stats(pods, container_id).writable_layer.used_bytes.value >= before + 4 * MIB
        ),
        "the writable layer to be measured again",
    )


def test_pod_stats_cover_its_containers_processes_and_network(pods: Pods) -> None:
    pods.pull(WEBSERVER_IMAGE)
    config = pods.sandbox_config("stats-web", labels={"app": "stats-web"})
    sandbox_id = pods.run(config)
    web = pods.run_container(sandbox_id, pods.container_config("web", WEBSERVER_IMAGE, command=[]))
    idle = pods.run_container(sandbox_id, pods.container_config("idle", command=["sleep", "3600"]))
    pod_ip = pods.sandbox_status(sandbox_id).status.network.ip
    assert b"<html>" in wait_for(lambda: fetch(f"http://{pod_ip}:80/"), "the web server")

    old = pod_stats(pods, sandbox_id).linux.network.default_interface
    for _ in range(5):
        assert b"<html>" in fetch(f"http://{pod_ip}:80/")

    def counted(stats: cri.PodSandboxStats) -> bool:
        linux, new = stats.linux, stats.linux.network.default_interface
        return (
            linux.cpu.usage_core_nano_seconds.value > 0
            and linux.memory.working_set_bytes.value > 0
            and linux.process.process_count.value >= 3  # pause, httpd, sleep
            and new.rx_bytes.value > old.rx_bytes.value
            and new.tx_bytes.value > old.tx_bytes.value + 5 * len(b"<html>")
        )

    after = measured(
        lambda: pod_stats(pods, sandbox_id), counted, "the pod's usage and traffic to be counted"
    )
    assert after.attributes.id == sandbox_id
    assert after.attributes.metadata.name == "stats-web"
    assert dict(after.attributes.labels) == {"app": "stats-web"}
    linux = after.linux
    assert linux.cpu.timestamp > 0 and linux.memory.timestamp > 0
    assert {c.attributes.id for c in linux.containers} == {web, idle}
    assert all(c.cpu.timestamp > 0 for c in linux.containers)
    assert linux.network.default_interface.name == "eth0"
    assert linux.network.timestamp > 0

    assert set(listed_pods(pods, id=sandbox_id[:13])) == {sandbox_id}
    assert sandbox_id in listed_pods(pods, label_selector={"app": "stats-web"})
    assert sandbox_id not in listed_pods(pods, label_selector={"app": "other"})

    pods.rt.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), timeout=60)
    assert sandbox_id not in listed_pods(pods)
    stopped = pod_stats(pods, sandbox_id)
    assert stopped.attributes.id == sandbox_id
    assert not stopped.linux.HasField("cpu") and not stopped.linux.HasField("network")


def test_pod_with_its_own_cgroup_parent(pods: Pods) -> None:
    parent = f"/pycrid-stats-{uuid.uuid4().hex[:12]}"
    try:
        config = pods.sandbox_config("stats-parent")
        config.linux.cgroup_parent = parent
        sandbox_id = pods.run(config)
        config_c = pods.container_config("sleeper", command=["sleep", "3600"])
        container_id = pods.create(sandbox_id, config_c, sandbox=config)
        pods.start(container_id)

        stats = measured(
            lambda: pod_stats(pods, sandbox_id),
            lambda s: (
                s.linux.process.process_count.value == 2  # pause and sleep
                and s.linux.memory.working_set_bytes.value > 0
                and s.linux.cpu.usage_core_nano_seconds.value > 0
                and all(c.cpu.usage_core_nano_seconds.value > 0 for c in s.linux.containers)
            ),
            "the pod's processes and usage to be counted",
        )
        (only,) = stats.linux.containers
        assert only.attributes.id == container_id
        assert container_stats(pods, container_id).memory.timestamp > 0
        pods.remove_all()
    finally:
        # Docker makes the parent cgroups but never removes them.
        for directory in glob.glob(f"/sys/fs/cgroup{parent}") + glob.glob(
            f"/sys/fs/cgroup/*{parent}"
        ):
            with contextlib.suppress(OSError):
                os.rmdir(directory)
