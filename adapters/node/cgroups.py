"""A process's cgroup, and the CPU, memory and process figures read from its files.

The cgroup is found from /proc/<pid>/cgroup and the host's mount table, on
cgroup v1 (the ``cpuacct``, ``memory`` and ``pids`` controllers, also on
hybrid hosts) or v2 (the unified hierarchy). Reading a cgroup never raises: a
figure whose files cannot be read (the cgroup went away, the controller is
not there) is None.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

UNLIMITED_MEMORY = 1 << 62
"""Limits above this mean "no limit" (the kernel rounds the maximum down to a page)."""
V1_CONTROLLERS = ("cpuacct", "memory", "pids")
PROC = Path("/proc")
"""Where /proc/<pid>/cgroup is read (tests point it at a synthetic tree)."""


# Figures read from cgroup files.


@dataclass(frozen=True)
class MemorySample:
    usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int
    limit: int | None = None
    cache: int = field(default=0, compare=False)
    """Page cache (v1 ``cache``, v2 ``file``): cAdvisor's container_memory_cache."""


@dataclass(frozen=True)
class CgroupSample:
    """One reading of a cgroup; a figure is None when its files could not be read."""

    timestamp: int
    cpu_ns: int | None = None
    memory: MemorySample | None = None
    pids: int | None = None


def parse_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat) as a dict."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None  # the cgroup went away, or this controller is not there


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _limit(value: int | None) -> int | None:
    return value if value is not None and 0 < value <= UNLIMITED_MEMORY else None


def _memory(usage: int, stat: dict[str, int], limit: int | None, v1: bool) -> MemorySample:
    """Figures as cAdvisor computes them; v1 reports hierarchical ``total_*`` keys."""
    prefix = "total_" if v1 and "total_inactive_file" in stat else ""
    inactive_file = stat.get(prefix + "inactive_file", 0)
    return MemorySample(
        usage=usage,
        working_set=max(0, usage - inactive_file),
        rss=stat.get(prefix + "rss", 0) if v1 else stat.get("anon", 0),
        page_faults=stat.get(prefix + "pgfault", 0),
        major_page_faults=stat.get(prefix + "pgmajfault", 0),
        limit=_limit(limit),
        cache=stat.get(prefix + "cache", 0) if v1 else stat.get("file", 0),
    )


def read_v1(dirs: dict[str, Path]) -> CgroupSample:
    """A cgroup v1 reading from the ``cpuacct``, ``memory`` and ``pids`` directories."""
    now = time.time_ns()
    memory = None
    if "memory" in dirs:
        usage = _read_int(dirs["memory"] / "memory.usage_in_bytes")
        stat = _read(dirs["memory"] / "memory.stat")
        if usage is not None and stat is not None:
            limit = _read_int(dirs["memory"] / "memory.limit_in_bytes")
            memory = _memory(usage, parse_keyed(stat), limit, v1=True)
    return CgroupSample(
        timestamp=now,
        cpu_ns=_read_int(dirs["cpuacct"] / "cpuacct.usage") if "cpuacct" in dirs else None,
        memory=memory,
        pids=_read_int(dirs["pids"] / "pids.current") if "pids" in dirs else None,
    )


def read_v2(directory: Path) -> CgroupSample:
    """A cgroup v2 reading from one unified-hierarchy directory."""
    now = time.time_ns()
    cpu_ns = None
    cpu_stat = _read(directory / "cpu.stat")
    if cpu_stat is not None and "usage_usec" in (keyed := parse_keyed(cpu_stat)):
        cpu_ns = keyed["usage_usec"] * 1000
    memory = None
    usage = _read_int(directory / "memory.current")
    stat = _read(directory / "memory.stat")
    if usage is not None and stat is not None:
        limit = _read_int(directory / "memory.max")
        memory = _memory(usage, parse_keyed(stat), limit, v1=False)
    return CgroupSample(
        timestamp=now, cpu_ns=cpu_ns, memory=memory, pids=_read_int(directory / "pids.current")
    )


def sum_samples(samples: Iterable[CgroupSample]) -> CgroupSample:
    """The figures of several cgroups added up (there is no common limit)."""
    samples = list(samples)
    cpus = [s.cpu_ns for s in samples if s.cpu_ns is not None]
    memories = [s.memory for s in samples if s.memory is not None]
    pids = [s.pids for s in samples if s.pids is not None]
    memory = None
    if memories:
        memory = MemorySample(
            usage=sum(m.usage for m in memories),
            working_set=sum(m.working_set for m in memories),
            rss=sum(m.rss for m in memories),
            page_faults=sum(m.page_faults for m in memories),
            major_page_faults=sum(m.major_page_faults for m in memories),
            cache=sum(m.cache for m in memories),
        )
    return CgroupSample(
        timestamp=max((s.timestamp for s in samples), default=time.time_ns()),
        cpu_ns=sum(cpus) if cpus else None,
        memory=memory,
        pids=sum(pids) if pids else None,
    )


# Where a process's cgroups are.


@dataclass(frozen=True)
class Mount:
    root: str
    point: str


def _unescape(path: str) -> str:
    r"""mountinfo escapes space, tab, newline and backslash as ``\ooo``."""
    for code in ("040", "011", "012", "134"):
        path = path.replace("\\" + code, chr(int(code, 8)))
    return path


def _relative(path: str, root: str) -> str | None:
    """``path`` below a mount's ``root``, or None when it lies outside it."""
    if root == "/":
        return path.lstrip("/")
    if path == root:
        return ""
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1 :]
    return None


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/<pid>/cgroup as controller -> path; the v2 entry is under ""."""
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = parts[1].split(",") if parts[1] else [""]
        for controller in controllers:
            paths[controller] = parts[2]
    return paths


@dataclass(frozen=True)
class CgroupPaths:
    """A cgroup's directories: one per v1 controller, or the v2 one under ""."""

    version: int
    dirs: dict[str, Path]

    def read(self) -> CgroupSample:
        return read_v1(self.dirs) if self.version == 1 else read_v2(self.dirs[""])

    def parent(self) -> CgroupPaths:
        return CgroupPaths(self.version, {k: d.parent for k, d in self.dirs.items()})

    @property
    def main_dir(self) -> Path:
        return self.dirs["memory" if self.version == 1 else ""]


@dataclass(frozen=True)
class Hierarchy:
    """The host's cgroup mounts: v1 controllers, and the unified (v2) mount."""

    v1: dict[str, Mount]
    v2: Mount | None

    @classmethod
    def parse(cls, mountinfo: str) -> Hierarchy:
        v1: dict[str, Mount] = {}
        v2 = None
        for line in mountinfo.splitlines():
            left, sep, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            if not sep or len(fields) < 5 or len(tail) < 3:
                continue
            mount = Mount(root=_unescape(fields[3]), point=_unescape(fields[4]))
            if tail[0] == "cgroup2" and v2 is None:
                v2 = mount
            elif tail[0] == "cgroup":
                for option in tail[2].split(","):
                    v1.setdefault(option, mount)
        return cls(v1=v1, v2=v2)

    @property
    def version(self) -> int:
        """1 when the v1 controllers are mounted (also on hybrid hosts), else 2."""
        return 1 if "memory" in self.v1 and "cpuacct" in self.v1 else 2

    def locate(self, proc_cgroup: str) -> CgroupPaths | None:
        """The directories of the cgroup a /proc/<pid>/cgroup text names."""
        paths = parse_proc_cgroup(proc_cgroup)
        if self.version == 2:
            if self.v2 is None or "" not in paths:
                return None
            relative = _relative(paths[""], self.v2.root)
            if relative is None:
                return None
            return CgroupPaths(2, {"": Path(self.v2.point, relative)})
        dirs = {}
        for controller in V1_CONTROLLERS:
            mount = self.v1.get(controller)
            if mount is None or controller not in paths:
                continue
            relative = _relative(paths[controller], mount.root)
            if relative is not None:
                dirs[controller] = Path(mount.point, relative)
        return CgroupPaths(1, dirs) if "memory" in dirs and "cpuacct" in dirs else None


def host_hierarchy() -> Hierarchy:
    """The cgroup mounts of this host, as this process sees them."""
    return Hierarchy.parse(_read(Path("/proc/self/mountinfo")) or "")


def locate_process(hierarchy: Hierarchy, pid: int, container_id: str) -> CgroupPaths | None:
    """The cgroup of a container's main process, if it still is that container's.

    The runtime names the container's cgroup after its ID; a cgroup without
    the ID in its path is not the container's.
    """
    text = _read(PROC / str(pid) / "cgroup")
    if text is None:
        return None
    found = hierarchy.locate(text)
    if found is None or container_id not in str(found.main_dir):
        return None  # the process is gone, and its PID may be someone else's
    return found


def is_dedicated_parent(paths: CgroupPaths, ids: Iterable[str]) -> bool:
    """True when every cgroup beside ``paths`` belongs to one of ``ids``.

    Then the parent measures exactly the pod (kubelet's pod cgroup) and not
    a directory that other pods or programs share.
    """
    ids = list(ids)
    try:
        with os.scandir(paths.main_dir.parent) as entries:
            children = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    return bool(children) and all(any(i in name for i in ids) for name in children)
