"""A pod's own cgroup (kubelet's pod cgroup, the CRI's ``cgroup_parent``), and its limits.

Both adapters put each container's cgroup at ``<cgroup_parent>/<id>``
(cgroupfs) or in a scope named after its ID in the pod's slice (systemd:
``.../kubepods-burstable-pod<uid>.slice/pycrid-<id>.scope``, ``docker-<id>.scope``),
so a pod with a parent of its own has a cgroup that holds exactly its pause
and app containers: the pause process's cgroup's parent.
A pod without one shares the node's default parent with every other pod;
it has no cgroup of its own to limit.
"""

from __future__ import annotations

from pathlib import Path

from pycrid.adapters.errors import FailedPrecondition
from pycrid.adapters.node import cgroups
from pycrid.adapters.node.cgroups import Hierarchy, parse_proc_cgroup
from pycrid.api.cri import api_pb2 as cri

V1_CONTROLLERS = ("cpu", "memory")


def _inside(path: str, root: str) -> str | None:
    if root == "/" or path == root:
        return path if root == "/" else "/"
    return path[len(root) :] if path.startswith(root + "/") else None


def process_dirs(hierarchy: Hierarchy, proc_cgroup: str) -> dict[str, Path]:
    """The cpu and memory directories (v1) or the unified one (v2, under "")."""
    paths = parse_proc_cgroup(proc_cgroup)
    dirs = {}
    if hierarchy.version == 2:
        if hierarchy.v2 is not None and "" in paths:
            inside = _inside(paths[""], hierarchy.v2.root)
            if inside is not None:
                dirs[""] = Path(hierarchy.v2.point + inside)
        return dirs
    for controller in V1_CONTROLLERS:
        mount = hierarchy.v1.get(controller)
        if mount is None or controller not in paths:
            continue
        inside = _inside(paths[controller], mount.root)
        if inside is not None:
            dirs[controller] = Path(mount.point + inside)
    return dirs


def pod_dirs(hierarchy: Hierarchy, pause_pid: int, member_ids: list[str]) -> dict[str, Path]:
    """The pod's cgroup directories: the parent of its pause process's cgroup.

    Refused unless that parent holds only the pod's own cgroups (its pause
    and containers): then it is the pod's, not a directory other pods share.
    """
    try:
        text = (cgroups.PROC / str(pause_pid) / "cgroup").read_text()
    except OSError:
        raise FailedPrecondition("the pod's pause process is not running") from None
    dirs = process_dirs(hierarchy, text)
    if not dirs:
        raise FailedPrecondition("the pod's cgroup is not found")
    parents = {}
    for controller, directory in dirs.items():
        if member_ids[0] not in directory.name:
            raise FailedPrecondition("the pause process is not in the pod's cgroup")
        siblings = [p.name for p in directory.parent.iterdir() if p.is_dir()]
        if not all(any(i in name for i in member_ids) for name in siblings):
            raise FailedPrecondition(
                "the pod has no cgroup of its own (no linux.cgroup_parent of its own): "
                "its containers share the node's default parent"
            )
        parents[controller] = directory.parent
    return parents


def limit_writes(
    resources: cri.LinuxContainerResources, version: int
) -> list[tuple[str, str, str]]:
    """(controller, file, value) for the limits the request sets, in the order to write them."""
    writes = []
    if version == 1:
        if resources.cpu_period:
            writes.append(("cpu", "cpu.cfs_period_us", str(resources.cpu_period)))
        if resources.cpu_quota:
            writes.append(("cpu", "cpu.cfs_quota_us", str(resources.cpu_quota)))
        if resources.cpu_shares:
            writes.append(("cpu", "cpu.shares", str(resources.cpu_shares)))
        if resources.memory_limit_in_bytes:
            writes.append(("memory", "memory.limit_in_bytes", str(resources.memory_limit_in_bytes)))
        return writes
    if resources.cpu_quota or resources.cpu_period:
        quota = str(resources.cpu_quota) if resources.cpu_quota > 0 else "max"
        writes.append(("", "cpu.max", f"{quota} {resources.cpu_period or 100000}"))
    if resources.cpu_shares:
        # The conversion runc and kubelet use from shares (2..262144) to weight (1..10000).
        weight = 1 + ((resources.cpu_shares - 2) * 9999) // 262142
        writes.append(("", "cpu.weight", str(max(1, min(10000, weight)))))
    if resources.memory_limit_in_bytes:
        writes.append(("", "memory.max", str(resources.memory_limit_in_bytes)))
    return writes


def unit_properties(resources: cri.LinuxContainerResources) -> list[str]:
    """The limits as systemd unit properties, for a pod slice under the systemd driver.

    systemd writes them to the slice's files on either cgroup version (on v1
    ``CPUWeight`` becomes ``cpu.shares`` and ``MemoryMax`` ``memory.limit_in_bytes``).
    """
    properties = []
    if resources.cpu_quota or resources.cpu_period:
        period = resources.cpu_period or 100000
        properties.append(f"CPUQuotaPeriodSec={period}us")
        if resources.cpu_quota > 0:
            # systemd takes the quota as a percentage of one CPU, in whole percent.
            percent = max(1, -(-resources.cpu_quota * 100 // period))
            properties.append(f"CPUQuota={percent}%")
        else:
            properties.append("CPUQuota=")
    if resources.cpu_shares:
        weight = 1 + ((resources.cpu_shares - 2) * 9999) // 262142
        properties.append(f"CPUWeight={max(1, min(10000, weight))}")
    if resources.memory_limit_in_bytes:
        properties.append(f"MemoryMax={resources.memory_limit_in_bytes}")
    return properties


def apply_limits(
    dirs: dict[str, Path], resources: cri.LinuxContainerResources, version: int
) -> None:
    for controller, name, value in limit_writes(resources, version):
        directory = dirs.get(controller)
        if directory is None:
            raise FailedPrecondition(f"the pod's cgroup has no {controller or 'unified'} directory")
        try:
            (directory / name).write_text(value)
        except OSError as e:
            raise FailedPrecondition(
                f"cannot set {name} to {value} on the pod's cgroup: {e}"
            ) from None
