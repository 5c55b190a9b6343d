"""The CRI's usage messages, built from cgroup and network readings."""

from __future__ import annotations

from pycrid.adapters.node.cgroups import CgroupSample
from pycrid.adapters.node.procnet import InterfaceSample
from pycrid.api.cri import api_pb2 as cri

DEFAULT_INTERFACE = "eth0"


def u64(value: int) -> cri.UInt64Value:
    """A CRI counter; a negative figure counts as 0."""
    return cri.UInt64Value(value=max(0, value))


def cpu_usage(sample: CgroupSample, rate: int | None) -> cri.CpuUsage | None:
    """The CPU time used, and its rate when one is known; None without a CPU figure."""
    if sample.cpu_ns is None:
        return None
    usage = cri.CpuUsage(timestamp=sample.timestamp, usage_core_nano_seconds=u64(sample.cpu_ns))
    if rate is not None:
        usage.usage_nano_cores.CopyFrom(u64(rate))
    return usage


def memory_usage(sample: CgroupSample) -> cri.MemoryUsage | None:
    """The memory figures; ``available_bytes`` only under a limit."""
    memory = sample.memory
    if memory is None:
        return None
    usage = cri.MemoryUsage(
        timestamp=sample.timestamp,
        working_set_bytes=u64(memory.working_set),
        usage_bytes=u64(memory.usage),
        rss_bytes=u64(memory.rss),
        page_faults=u64(memory.page_faults),
        major_page_faults=u64(memory.major_page_faults),
    )
    if memory.limit is not None:
        usage.available_bytes.CopyFrom(u64(memory.limit - memory.working_set))
    return usage


def process_usage(sample: CgroupSample) -> cri.ProcessUsage | None:
    """The number of processes; None without a ``pids`` figure."""
    if sample.pids is None:
        return None
    return cri.ProcessUsage(timestamp=sample.timestamp, process_count=u64(sample.pids))


def network_usage(interfaces: list[InterfaceSample], timestamp: int) -> cri.NetworkUsage:
    """eth0 (else the first) as the default interface; loopback is left out, as cAdvisor does."""
    usable = [i for i in interfaces if i.name != "lo"]
    usage = cri.NetworkUsage(timestamp=timestamp)
    if not usable:
        return usage
    default = next((i for i in usable if i.name == DEFAULT_INTERFACE), usable[0])
    usage.default_interface.CopyFrom(_interface(default))
    usage.interfaces.extend(_interface(i) for i in usable if i is not default)
    return usage


def _interface(sample: InterfaceSample) -> cri.NetworkInterfaceUsage:
    return cri.NetworkInterfaceUsage(
        name=sample.name,
        rx_bytes=u64(sample.rx_bytes),
        rx_errors=u64(sample.rx_errors),
        tx_bytes=u64(sample.tx_bytes),
        tx_errors=u64(sample.tx_errors),
    )
