"""The pod cgroup's limits as files, and finding the pod's own cgroup."""

from __future__ import annotations

from pathlib import Path

import pytest

from pycrid.adapters.errors import FailedPrecondition
from pycrid.adapters.node.cgroups import Hierarchy
from pycrid.adapters.node.podcgroup import apply_limits, limit_writes, process_dirs
from pycrid.api.cri import api_pb2 as cri

RESOURCES = cri.LinuxContainerResources(
    cpu_period=100000, cpu_quota=50000, cpu_shares=1024, memory_limit_in_bytes=1 << 30
)


def test_v1_writes_the_period_before_the_quota() -> None:
    assert limit_writes(RESOURCES, 1) == [
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.shares", "1024"),
        ("memory", "memory.limit_in_bytes", str(1 << 30)),
    ]


def test_v2_writes_cpu_max_weight_and_memory_max() -> None:
    assert limit_writes(RESOURCES, 2) == [
        ("", "cpu.max", "50000 100000"),
        ("", "cpu.weight", "39"),
        ("", "memory.max", str(1 << 30)),
    ]
    assert limit_writes(cri.LinuxContainerResources(), 2) == []


def test_limits_land_in_the_files_and_a_missing_directory_is_refused(tmp_path: Path) -> None:
    apply_limits({"": tmp_path}, RESOURCES, 2)
    assert (tmp_path / "cpu.max").read_text() == "50000 100000"
    with pytest.raises(FailedPrecondition):
        apply_limits({"cpu": tmp_path}, RESOURCES, 1)


def test_process_dirs_follow_the_mounts_roots() -> None:
    mountinfo = (
        "30 25 0:26 /outer /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    )
    hierarchy = Hierarchy.parse(mountinfo)
    dirs = process_dirs(hierarchy, "4:memory:/outer/pod/c1\n2:cpu,cpuacct:/pod/c1\n")
    assert dirs == {
        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct/pod/c1"),
        "memory": Path("/sys/fs/cgroup/memory/pod/c1"),
    }
