"""CRI metrics: the descriptors, and metrics built from cgroup and network readings."""

from __future__ import annotations

from pathlib import Path

from pycrid.adapters.node import cadvisor, cgroups
from pycrid.adapters.node.cgroups import CgroupSample, MemorySample
from pycrid.adapters.node.procnet import parse_net_dev
from pycrid.adapters.podmetrics import PodMetrics, PodProcesses
from pycrid.api.cri import api_pb2 as cri

NET_DEV = "\n".join(
    [
        "Inter-|   Receive |  Transmit",
        " face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs ...",
        "    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0",
        "  eth0: 5000 40 1 0 0 0 0 0 3000 30 2 0 0 0 0 0",
    ]
)


def test_every_descriptor_names_a_cadvisor_metric_with_help() -> None:
    descriptors = cadvisor.descriptors()
    names = [d.name for d in descriptors]
    assert len(names) == len(set(names))
    assert all(d.name.startswith("container_") and d.help for d in descriptors)
    keys = {d.name: list(d.label_keys) for d in descriptors}
    assert keys["container_cpu_usage_seconds_total"] == []
    assert keys["container_network_transmit_bytes_total"] == ["interface"]


def test_cgroup_readings_become_metrics_of_the_described_shape() -> None:
    sample = CgroupSample(
        timestamp=7,
        cpu_ns=2_500_000_000,
        memory=MemorySample(
            usage=300, working_set=200, rss=100, page_faults=9, major_page_faults=1, cache=50
        ),
        pids=3,
    )
    metrics = cadvisor.cgroup_metrics(sample) + cadvisor.network_metrics(parse_net_dev(NET_DEV), 7)
    described = {d.name: d for d in cadvisor.descriptors()}
    values = {}
    for metric in metrics:
        assert len(metric.label_values) == len(described[metric.name].label_keys)
        assert metric.timestamp == 7
        values[(metric.name, *metric.label_values)] = metric.value.value
    assert values[("container_cpu_usage_seconds_total",)] == 2
    assert values[("container_memory_working_set_bytes",)] == 200
    assert values[("container_memory_cache",)] == 50
    assert values[("container_memory_failures_total", "pgmajfault", "container")] == 1
    assert values[("container_processes",)] == 3
    assert values[("container_network_receive_packets_total", "eth0")] == 40
    assert values[("container_network_transmit_errors_total", "eth0")] == 2
    assert not any("lo" in key for key in values)


def test_v2_page_cache_is_the_file_figure(tmp_path: Path) -> None:
    (tmp_path / "memory.current").write_text("1000\n")
    (tmp_path / "memory.stat").write_text("anon 300\nfile 600\ninactive_file 100\n")
    (tmp_path / "memory.max").write_text("max\n")
    memory = cgroups.read_v2(tmp_path).memory
    assert memory is not None and (memory.cache, memory.working_set) == (600, 900)


class NoStats:
    async def list_container_stats(
        self, request: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        layer = cri.FilesystemUsage(
            fs_id=cri.FilesystemIdentifier(mountpoint="/var/lib/x"),
            used_bytes=cri.UInt64Value(value=4096),
        )
        return cri.ListContainerStatsResponse(
            stats=[
                cri.ContainerStats(
                    attributes=cri.ContainerAttributes(id="c1"), writable_layer=layer
                )
            ]
        )


async def test_a_pod_whose_processes_are_gone_lists_its_containers_without_figures() -> None:
    pods = [PodProcesses(sandbox_id="p1", pause_pid=0, own_network=True, containers={"c1": 0})]
    metrics = PodMetrics(lambda: pods, NoStats())  # type: ignore[arg-type]
    response = await metrics.list_pod_sandbox_metrics(cri.ListPodSandboxMetricsRequest())
    (pod,) = response.pod_metrics
    assert pod.pod_sandbox_id == "p1" and not pod.metrics
    (container,) = pod.container_metrics
    (fs,) = container.metrics
    assert (fs.name, list(fs.label_values), fs.value.value) == (
        "container_fs_usage_bytes",
        ["/var/lib/x"],
        4096,
    )
