"""cAdvisor-named metrics from cgroup and network readings, for the CRI's metrics calls.

kubelet's ``/metrics/cadvisor`` can be served from ListPodSandboxMetrics
instead of cAdvisor; it expects the names, types and label keys cAdvisor
uses. kubelet adds the container, pod and namespace labels itself; the
label keys here are only the metric's own (the interface, the fault kind).
Values come from the same readers as the stats calls (cgroups.py,
procnet.py).
"""

from __future__ import annotations

from pycrid.adapters.node.cgroups import CgroupSample
from pycrid.adapters.node.procnet import InterfaceSample
from pycrid.api.cri import api_pb2 as cri

COUNTER, GAUGE = cri.COUNTER, cri.GAUGE

DESCRIPTORS: dict[str, tuple[cri.MetricType, str, tuple[str, ...]]] = {
    "container_cpu_usage_seconds_total": (COUNTER, "Cumulative cpu time consumed in seconds.", ()),
    "container_memory_usage_bytes": (
        GAUGE,
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        (),
    ),
    "container_memory_working_set_bytes": (GAUGE, "Current working set in bytes.", ()),
    "container_memory_rss": (GAUGE, "Size of RSS in bytes.", ()),
    "container_memory_cache": (GAUGE, "Number of bytes of page cache memory.", ()),
    "container_memory_failures_total": (
        COUNTER,
        "Cumulative count of memory allocation failures.",
        ("failure_type", "scope"),
    ),
    "container_spec_memory_limit_bytes": (GAUGE, "Memory limit for the container.", ()),
    "container_processes": (GAUGE, "Number of processes running inside the container.", ()),
    "container_fs_usage_bytes": (
        GAUGE,
        "Number of bytes that are consumed by the container on this filesystem.",
        ("device",),
    ),
    "container_network_receive_bytes_total": (
        COUNTER,
        "Cumulative count of bytes received.",
        ("interface",),
    ),
    "container_network_receive_packets_total": (
        COUNTER,
        "Cumulative count of packets received.",
        ("interface",),
    ),
    "container_network_receive_errors_total": (
        COUNTER,
        "Cumulative count of errors encountered while receiving.",
        ("interface",),
    ),
    "container_network_transmit_bytes_total": (
        COUNTER,
        "Cumulative count of bytes transmitted.",
        ("interface",),
    ),
    "container_network_transmit_packets_total": (
        COUNTER,
        "Cumulative count of packets transmitted.",
        ("interface",),
    ),
    "container_network_transmit_errors_total": (
        COUNTER,
        "Cumulative count of errors encountered while transmitting.",
        ("interface",),
    ),
}
"""Name: (type, help, label keys), as cAdvisor defines them."""


def descriptors() -> list[cri.MetricDescriptor]:
    return [
        cri.MetricDescriptor(name=name, help=help_text, label_keys=list(labels))
        for name, (_, help_text, labels) in DESCRIPTORS.items()
    ]


def metric(name: str, timestamp: int, value: int, *labels: str) -> cri.Metric:
    kind, _, keys = DESCRIPTORS[name]
    assert len(labels) == len(keys), name
    return cri.Metric(
        name=name,
        timestamp=timestamp,
        metric_type=kind,
        label_values=list(labels),
        value=cri.UInt64Value(value=max(0, value)),
    )


def cgroup_metrics(sample: CgroupSample) -> list[cri.Metric]:
    """CPU, memory and processes of one cgroup reading (or several added up)."""
    at = sample.timestamp
    metrics = []
    if sample.cpu_ns is not None:
        # The CRI carries integers: whole seconds, as a counter of them.
        metrics.append(metric("container_cpu_usage_seconds_total", at, sample.cpu_ns // 10**9))
    memory = sample.memory
    if memory is not None:
        metrics += [
            metric("container_memory_usage_bytes", at, memory.usage),
            metric("container_memory_working_set_bytes", at, memory.working_set),
            metric("container_memory_rss", at, memory.rss),
            metric("container_memory_cache", at, memory.cache),
            metric(
                "container_memory_failures_total", at, memory.page_faults, "pgfault", "container"
            ),
            metric(
                "container_memory_failures_total",
                at,
                memory.major_page_faults,
                "pgmajfault",
                "container",
            ),
        ]
        if memory.limit is not None:
            metrics.append(metric("container_spec_memory_limit_bytes", at, memory.limit))
    if sample.pids is not None:
        metrics.append(metric("container_processes", at, sample.pids))
    return metrics


def network_metrics(interfaces: list[InterfaceSample], timestamp: int) -> list[cri.Metric]:
    """Per interface, loopback left out as cAdvisor does."""
    metrics = []
    for i in interfaces:
        if i.name == "lo":
            continue
        metrics += [
            metric("container_network_receive_bytes_total", timestamp, i.rx_bytes, i.name),
            metric("container_network_receive_packets_total", timestamp, i.rx_packets, i.name),
            metric("container_network_receive_errors_total", timestamp, i.rx_errors, i.name),
            metric("container_network_transmit_bytes_total", timestamp, i.tx_bytes, i.name),
            metric("container_network_transmit_packets_total", timestamp, i.tx_packets, i.name),
            metric("container_network_transmit_errors_total", timestamp, i.tx_errors, i.name),
        ]
    return metrics


def fs_metrics(used_bytes: int, device: str, timestamp: int) -> list[cri.Metric]:
    return [metric("container_fs_usage_bytes", timestamp, used_bytes, device)]
