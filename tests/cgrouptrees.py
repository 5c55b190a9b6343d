"""Synthetic cgroup trees: cgroup v1 or v2, laid out by cgroupfs or by systemd.

A tree is a directory standing in for /sys/fs/cgroup, a mountinfo text that
mounts it the way the host would, and /proc/<pid>/cgroup files, so every
cgroup reader and writer can be run against a layout this machine does not
have (no systemd as init, no cgroup v2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pycrid.adapters.node.cgroups import Hierarchy

V1_HIERARCHIES = ("cpu", "cpuacct", "memory", "pids", "cpuset", "name=systemd")
POD_UID = "0a1b2c3d_4e5f"
LAYOUTS = [(1, False), (1, True), (2, False), (2, True)]
LAYOUT_IDS = ["v1-cgroupfs", "v1-systemd", "v2-cgroupfs", "v2-systemd"]


@dataclass
class Tree:
    root: Path
    """Stands in for /sys/fs/cgroup."""
    proc: Path
    version: int
    systemd: bool
    scope_prefix: str = "pycrid"
    mountinfo: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    """Container (or pause) ID -> the PID whose cgroup is its."""

    @property
    def hierarchy(self) -> Hierarchy:
        return Hierarchy.parse(self.mountinfo)

    @property
    def pod_path(self) -> str:
        """kubelet's cgroup parent for a burstable pod under this driver."""
        if self.systemd:
            return f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{POD_UID}.slice"
        return f"/kubepods/burstable/pod{POD_UID}"

    def leaf(self, container_id: str) -> str:
        """A container's cgroup: ``<parent>/<id>`` or ``<parent>/<prefix>-<id>.scope``."""
        if self.systemd:
            return f"{self.pod_path}/{self.scope_prefix}-{container_id}.scope"
        return f"{self.pod_path}/{container_id}"

    def dirs(self, cgroup: str) -> dict[str, Path]:
        """Where ``cgroup`` lies: one directory per v1 hierarchy, or the unified one."""
        if self.version == 2:
            return {"": self.root / cgroup.lstrip("/")}
        return {
            name: self.root / name.removeprefix("name=") / cgroup.lstrip("/")
            for name in V1_HIERARCHIES
        }

    def add(
        self, container_id: str, pid: int, memory: int = 40 << 20, limit: int | None = None
    ) -> str:
        """A running container: its cgroup with figures, and its process's cgroup file."""
        leaf = self.leaf(container_id)
        for name, directory in self.dirs(leaf).items():
            directory.mkdir(parents=True, exist_ok=True)
            write_figures(directory, name, self.version, memory, limit)
        for name, directory in self.dirs(self.pod_path).items():
            write_figures(directory, name, self.version, 3 * memory, None)
        (self.proc / str(pid)).mkdir(parents=True, exist_ok=True)
        (self.proc / str(pid) / "cgroup").write_text(proc_cgroup(self.version, leaf))
        self.pids[container_id] = pid
        return leaf


def write_figures(directory: Path, name: str, version: int, memory: int, limit: int | None) -> None:
    """A cgroup's readings as the kernel shows them (only the files the readers open)."""
    files: dict[str, str] = {}
    if version == 2:
        files = {
            "cgroup.procs": "1\n",
            "cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
            "cpu.max": "max 100000\n",
            "cpu.weight": "100\n",
            "memory.current": f"{memory}\n",
            "memory.stat": f"anon {memory // 2}\nfile {memory // 4}\ninactive_file "
            f"{memory // 8}\npgfault 90\npgmajfault 3\n",
            "memory.max": f"{limit}\n" if limit else "max\n",
            "pids.current": "2\n",
        }
    elif name == "cpuacct":
        files = {"cpuacct.usage": "2500000000\n"}
    elif name == "cpu":
        files = {
            "cpu.shares": "1024\n",
            "cpu.cfs_quota_us": "-1\n",
            "cpu.cfs_period_us": "100000\n",
        }
    elif name == "memory":
        files = {
            "memory.usage_in_bytes": f"{memory}\n",
            "memory.stat": f"cache {memory // 4}\nrss {memory // 2}\ntotal_cache {memory // 4}\n"
            f"total_rss {memory // 2}\ntotal_inactive_file {memory // 8}\n"
            "total_pgfault 90\ntotal_pgmajfault 3\n",
            "memory.limit_in_bytes": f"{limit or 9223372036854771712}\n",
        }
    elif name == "pids":
        files = {"pids.current": "2\n"}
    for file_name, text in files.items():
        (directory / file_name).write_text(text)


def proc_cgroup(version: int, cgroup: str) -> str:
    if version == 2:
        return f"0::{cgroup}\n"
    lines = [f"{i + 1}:{name}:{cgroup}" for i, name in enumerate(reversed(V1_HIERARCHIES))]
    return "\n".join(lines) + "\n0::/\n"


def make_tree(tmp_path: Path, version: int, systemd: bool, scope_prefix: str = "pycrid") -> Tree:
    root = tmp_path / "sys-fs-cgroup"
    proc = tmp_path / "proc"
    root.mkdir()
    proc.mkdir()
    lines = []
    if version == 2:
        lines.append(f"30 22 0:26 / {root} rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate")
    else:
        for i, name in enumerate(V1_HIERARCHIES):
            point = root / name.removeprefix("name=")
            point.mkdir()
            options = "rw,xattr,name=systemd" if name == "name=systemd" else f"rw,{name}"
            lines.append(f"{31 + i} 22 0:{27 + i} / {point} rw - cgroup cgroup {options}")
        (root / "unified").mkdir()
        lines.append(f"40 22 0:40 / {root / 'unified'} rw - cgroup2 cgroup2 rw")
    return Tree(
        root=root,
        proc=proc,
        version=version,
        systemd=systemd,
        scope_prefix=scope_prefix,
        mountinfo="\n".join(lines) + "\n",
    )
