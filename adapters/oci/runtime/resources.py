"""CRI Linux resources as OCI ``linux.resources`` (create, and ``runc update`` later).

Only what the CRI sets appears: a zero means "not set" in the CRI. As in
containerd, a memory limit without a swap limit also caps memory+swap at the
same value where the swap controller exists, so a container does not swap by
default. ``unified`` (cgroup v2 files) cannot be honoured on a v1 host, so it
is refused there rather than dropped. Limits whose cgroup controller the
node lacks (hugetlb most often, also cpu, cpuset or memory) are skipped with a
note, as containerd does by default, rather than failing every container.
"""

from __future__ import annotations

from typing import Any

from pycrid.adapters.errors import InvalidArgument
from pycrid.adapters.oci.runtime.nodefacts import NodeFacts
from pycrid.api.cri import api_pb2 as cri


def linux_resources(
    res: cri.LinuxContainerResources, node: NodeFacts, notes: list[str]
) -> dict[str, Any]:
    """cpu, memory, hugepageLimits and unified for ``res``; notes for the log go to ``notes``."""
    for name in ("cpu_period", "cpu_shares", "memory_limit_in_bytes"):
        if getattr(res, name) < 0:
            raise InvalidArgument(f"{name} {getattr(res, name)} is negative")
    resources: dict[str, Any] = {}
    cpu = _cpu(res)
    for controller, keys in (("cpu", ("shares", "quota", "period")), ("cpuset", ("cpus", "mems"))):
        if _missing(node, controller) and any(k in cpu for k in keys):
            notes.append(f"{controller} limits skipped: no {controller} cgroup controller")
            for key in keys:
                cpu.pop(key, None)
    if cpu:
        resources["cpu"] = cpu
    memory = _memory(res, node.swap_controller)
    if memory and _missing(node, "memory"):
        notes.append("memory limits skipped: no memory cgroup controller")
        memory = {}
    if memory:
        resources["memory"] = memory
    if res.hugepage_limits:
        if node.hugetlb_controller:
            resources["hugepageLimits"] = [
                {"pageSize": h.page_size, "limit": h.limit} for h in res.hugepage_limits
            ]
        else:
            notes.append("hugepage limits skipped: no hugetlb cgroup controller on this host")
    if res.unified:
        if not node.cgroup_v2:
            raise InvalidArgument("unified cgroup resources need a cgroup v2 host")
        resources["unified"] = dict(res.unified)
    return resources


def _missing(node: NodeFacts, controller: str) -> bool:
    return node.controllers is not None and controller not in node.controllers


def _cpu(res: cri.LinuxContainerResources) -> dict[str, Any]:
    cpu: dict[str, Any] = {}
    if res.cpu_shares:
        cpu["shares"] = res.cpu_shares
    if res.cpu_quota:
        cpu["quota"] = res.cpu_quota
    if res.cpu_period:
        cpu["period"] = res.cpu_period
    if res.cpuset_cpus:
        cpu["cpus"] = res.cpuset_cpus
    if res.cpuset_mems:
        cpu["mems"] = res.cpuset_mems
    return cpu


def _memory(res: cri.LinuxContainerResources, swap_controller: bool) -> dict[str, Any]:
    memory: dict[str, Any] = {}
    if res.memory_limit_in_bytes:
        memory["limit"] = res.memory_limit_in_bytes
    if swap_controller:
        swap = res.memory_swap_limit_in_bytes or res.memory_limit_in_bytes
        if swap:
            memory["swap"] = swap
    return memory
