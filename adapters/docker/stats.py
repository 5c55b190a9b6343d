"""Container and pod stats, read from the kernel rather than from Docker.

Docker's stats API samples each container for about a second, and asking it
for every container on every kubelet housekeeping round is what makes
cri-dockerd hammer dockerd. Here each container is inspected once (for the
process that locates its cgroup, and its writable layer) and after that its
figures come straight from the cgroup files: cgroup v1 (``cpuacct``,
``memory``, ``pids`` controllers) or v2 (the unified hierarchy). A pod's
figures come from its own cgroup when kubelet gave it one (``cgroup_parent``)
and it holds only the pod's containers, else they are the sum of its
containers'; its network figures are those of the pause container's network
namespace.

The writable layer's size is measured by walking its overlay upper
directory, in a small thread pool, and kept for a while: a stats call never
waits for a walk longer than a moment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pycrid.adapters.docker.containers import DockerContainers
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.store import RUNNING_STATES, ContainerRecord, SandboxRecord
from pycrid.api.cri import api_pb2 as cri
from pycrid.server.errors import CRIError, NotFound

log = logging.getLogger("pycrid.docker")

UNLIMITED_MEMORY = 1 << 62
"""Limits above this mean "no limit" (the kernel rounds the maximum down to a page)."""
MIN_RATE_WINDOW_NS = 1_000_000_000
"""Samples closer than this to the previous one keep the previous CPU rate."""
DEFAULT_INTERFACE = "eth0"
LAYER_MAX_AGE = 10.0
LAYER_FIRST_WAIT = 1.0
LAYER_MAX_ENTRIES = 200_000
LAYER_WORKERS = 2


# Figures read from cgroup files.


@dataclass(frozen=True)
class MemorySample:
    usage: int
    working_set: int
    rss: int
    page_faults: int
    major_page_faults: int
    limit: int | None = None


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


V1_CONTROLLERS = ("cpuacct", "memory", "pids")


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


def locate_process(hierarchy: Hierarchy, pid: int, docker_id: str) -> CgroupPaths | None:
    """The cgroup of a container's main process, if it still is that container's."""
    text = _read(Path(f"/proc/{pid}/cgroup"))
    if text is None:
        return None
    found = hierarchy.locate(text)
    if found is None or docker_id not in str(found.main_dir):
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


# Network figures of a namespace.


@dataclass(frozen=True)
class InterfaceSample:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


def parse_net_dev(text: str) -> list[InterfaceSample]:
    """/proc/<pid>/net/dev, one entry per interface."""
    interfaces = []
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        values = rest.split()
        if not sep or len(values) < 16 or not all(v.isdigit() for v in values):
            continue
        interfaces.append(
            InterfaceSample(
                name=name.strip(),
                rx_bytes=int(values[0]),
                rx_errors=int(values[2]),
                tx_bytes=int(values[8]),
                tx_errors=int(values[10]),
            )
        )
    return interfaces


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
        rx_bytes=_u64(sample.rx_bytes),
        rx_errors=_u64(sample.rx_errors),
        tx_bytes=_u64(sample.tx_bytes),
        tx_errors=_u64(sample.tx_errors),
    )


# CPU rates.


@dataclass
class _CpuPoint:
    timestamp: int
    usage: int
    rate: int | None = None


class CpuRates:
    """usage_nano_cores: the CPU time used since the previous sample, per second."""

    def __init__(self, min_window_ns: int = MIN_RATE_WINDOW_NS) -> None:
        self.min_window_ns = min_window_ns
        self._points: dict[str, _CpuPoint] = {}

    def rate(self, key: str, timestamp: int, usage: int) -> int | None:
        point = self._points.get(key)
        if point is None or usage < point.usage or timestamp <= point.timestamp:
            # First sample, or the figures started over (a container left the sum).
            self._points[key] = _CpuPoint(timestamp, usage)
            return None
        window = timestamp - point.timestamp
        if window < self.min_window_ns:
            return point.rate
        rate = (usage - point.usage) * 1_000_000_000 // window
        self._points[key] = _CpuPoint(timestamp, usage, rate)
        return rate

    def keep_only(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        for key in [k for k in self._points if k not in keys]:
            del self._points[key]


# Writable layers.


@dataclass(frozen=True)
class DirUsage:
    used_bytes: int
    inodes: int
    complete: bool = True


def measure_dir(root: str, max_entries: int = LAYER_MAX_ENTRIES) -> DirUsage:
    """Allocated bytes and inodes under ``root``, links not followed, hard links once.

    Stops after ``max_entries`` entries (``complete`` is then False): a
    layer full of small files must not keep a thread busy for minutes.
    """
    try:
        used, inodes = os.lstat(root).st_blocks * 512, 1
    except OSError:
        return DirUsage(0, 0)
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        for entry in _entries(stack.pop()):
            try:
                st = entry.stat(follow_symlinks=False)
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if st.st_nlink > 1 and not is_dir:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            used += st.st_blocks * 512
            inodes += 1
            if inodes >= max_entries:
                return DirUsage(used, inodes, complete=False)
            if is_dir:
                stack.append(entry.path)
    return DirUsage(used, inodes)


def _entries(directory: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            yield from entries
    except OSError:
        return  # removed while walking, or unreadable


@dataclass(frozen=True)
class MeasuredLayer:
    at: float
    timestamp: int
    usage: DirUsage


class LayerSizes:
    """Writable layer sizes, measured off the event loop and kept ``max_age`` seconds.

    A stale size is answered at once while a new walk runs; only the first
    measurement of a layer is waited for, and for ``first_wait`` at most.
    """

    def __init__(
        self,
        max_age: float = LAYER_MAX_AGE,
        first_wait: float = LAYER_FIRST_WAIT,
        max_entries: int = LAYER_MAX_ENTRIES,
    ) -> None:
        self.max_age = max_age
        self.first_wait = first_wait
        self.max_entries = max_entries
        self._pool = ThreadPoolExecutor(max_workers=LAYER_WORKERS, thread_name_prefix="layer")
        self._known: dict[str, MeasuredLayer] = {}
        self._pending: dict[str, asyncio.Future[DirUsage]] = {}

    async def get(self, key: str, path: str) -> MeasuredLayer | None:
        known = self._known.get(key)
        if known is None or time.monotonic() - known.at > self.max_age:
            pending = self._measure(key, path)
            if known is None:
                await asyncio.wait({pending}, timeout=self.first_wait)
                known = self._known.get(key)
        return known

    def _measure(self, key: str, path: str) -> asyncio.Future[DirUsage]:
        if key in self._pending:
            return self._pending[key]
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, measure_dir, path, self.max_entries)
        self._pending[key] = future
        future.add_done_callback(lambda done: self._done(key, path, done))
        return future

    def _done(self, key: str, path: str, done: asyncio.Future[DirUsage]) -> None:
        self._pending.pop(key, None)
        if done.cancelled():
            return
        error = done.exception()
        if error is not None:
            log.debug("measuring %s failed: %s", path, error)
            return
        usage = done.result()
        if not usage.complete:
            log.debug("%s has over %d entries; its size is a lower bound", path, usage.inodes)
        self._known[key] = MeasuredLayer(time.monotonic(), time.time_ns(), usage)

    def keep_only(self, keys: Iterable[str]) -> None:
        keys = set(keys)
        for key in [k for k in self._known if k not in keys]:
            del self._known[key]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# Building the CRI messages.


def _u64(value: int) -> cri.UInt64Value:
    return cri.UInt64Value(value=max(0, value))


def cpu_usage(sample: CgroupSample, rate: int | None) -> cri.CpuUsage | None:
    if sample.cpu_ns is None:
        return None
    usage = cri.CpuUsage(timestamp=sample.timestamp, usage_core_nano_seconds=_u64(sample.cpu_ns))
    if rate is not None:
        usage.usage_nano_cores.CopyFrom(_u64(rate))
    return usage


def memory_usage(sample: CgroupSample) -> cri.MemoryUsage | None:
    memory = sample.memory
    if memory is None:
        return None
    usage = cri.MemoryUsage(
        timestamp=sample.timestamp,
        working_set_bytes=_u64(memory.working_set),
        usage_bytes=_u64(memory.usage),
        rss_bytes=_u64(memory.rss),
        page_faults=_u64(memory.page_faults),
        major_page_faults=_u64(memory.major_page_faults),
    )
    if memory.limit is not None:
        usage.available_bytes.CopyFrom(_u64(memory.limit - memory.working_set))
    return usage


def writable_layer(upper_dir: str, measured: MeasuredLayer | None) -> cri.FilesystemUsage:
    """The layer's usage on Docker's storage-driver directory (as ImageFsInfo names it)."""
    mountpoint = os.path.dirname(os.path.dirname(upper_dir.rstrip("/")))
    layer = cri.FilesystemUsage(
        timestamp=measured.timestamp if measured else time.time_ns(),
        fs_id=cri.FilesystemIdentifier(mountpoint=mountpoint),
    )
    if measured is not None:
        layer.used_bytes.CopyFrom(_u64(measured.usage.used_bytes))
        layer.inodes_used.CopyFrom(_u64(measured.usage.inodes))
    return layer


def container_attributes(record: ContainerRecord) -> cri.ContainerAttributes:
    config = record.config
    return cri.ContainerAttributes(
        id=record.id,
        metadata=config.metadata,
        labels=config.labels,
        annotations=config.annotations,
    )


def sandbox_attributes(record: SandboxRecord) -> cri.PodSandboxAttributes:
    config = record.config
    return cri.PodSandboxAttributes(
        id=record.id,
        metadata=config.metadata,
        labels=config.labels,
        annotations=config.annotations,
    )


def _selected(labels: Any, selector: Any) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# The RPCs.


@dataclass
class Target:
    """What stats need of one Docker container, learnt from one inspect."""

    upper_dir: str = ""
    pid: int = 0
    cgroups: CgroupPaths | None = None


@dataclass
class _PodReading:
    pause: CgroupSample | None
    containers: dict[str, CgroupSample | None]
    pod: CgroupSample | None = None
    network: list[InterfaceSample] | None = None
    network_timestamp: int = field(default_factory=time.time_ns)


class DockerStats:
    """ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats."""

    def __init__(self, ctx: DockerContext, containers: DockerContainers) -> None:
        self.ctx = ctx
        self.containers = containers
        self.layers = LayerSizes()
        self.rates = CpuRates()
        self._targets: dict[str, Target] = {}
        self._hierarchy: Hierarchy | None = None

    def close(self) -> None:
        self.layers.close()

    # Containers.

    async def container_stats(
        self, request: cri.ContainerStatsRequest
    ) -> cri.ContainerStatsResponse:
        record = self._container(request.container_id)
        running = _running(record)
        target = await self._target(record.id, record.pid, running, strict=True)
        samples = await asyncio.to_thread(self._sample, [(record.id, target, running)])
        stats = await self._container_stats(record, target, samples[record.id])
        return cri.ContainerStatsResponse(stats=stats)

    async def list_container_stats(
        self, request: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        await self.containers.refresh_all()
        wanted = request.filter
        records = [
            r
            for r in self._known_containers()
            if (not wanted.id or r.id == wanted.id)
            and (not wanted.pod_sandbox_id or r.sandbox_id == wanted.pod_sandbox_id)
            and _selected(r.config.labels, wanted.label_selector)
        ]
        if not wanted.id and not wanted.pod_sandbox_id and not wanted.label_selector:
            self._forget_others()
        stats = await self._many_container_stats(records)
        return cri.ListContainerStatsResponse(stats=stats)

    async def _many_container_stats(
        self, records: list[ContainerRecord]
    ) -> list[cri.ContainerStats]:
        targets = await asyncio.gather(*(self._target(r.id, r.pid, _running(r)) for r in records))
        jobs = [(r.id, t, _running(r)) for r, t in zip(records, targets, strict=True)]
        samples = await asyncio.to_thread(self._sample, jobs)
        return list(
            await asyncio.gather(
                *(
                    self._container_stats(r, t, samples.get(r.id))
                    for r, t in zip(records, targets, strict=True)
                )
            )
        )

    async def _container_stats(
        self, record: ContainerRecord, target: Target | None, sample: CgroupSample | None
    ) -> cri.ContainerStats:
        stats = cri.ContainerStats(attributes=container_attributes(record))
        if sample is not None:
            if (cpu := self._cpu(record.id, sample)) is not None:
                stats.cpu.CopyFrom(cpu)
            if (memory := memory_usage(sample)) is not None:
                stats.memory.CopyFrom(memory)
        if target is not None and target.upper_dir:
            measured = await self.layers.get(record.id, target.upper_dir)
            stats.writable_layer.CopyFrom(writable_layer(target.upper_dir, measured))
        return stats

    def _cpu(self, key: str, sample: CgroupSample) -> cri.CpuUsage | None:
        if sample.cpu_ns is None:
            return None
        return cpu_usage(sample, self.rates.rate(key, sample.timestamp, sample.cpu_ns))

    # Pods.

    async def pod_sandbox_stats(
        self, request: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse:
        sandbox = self.ctx.store.sandbox(request.pod_sandbox_id)
        if sandbox.id not in self.ctx.sandbox_ids:
            raise NotFound(f"pod sandbox {sandbox.id!r} not found")
        return cri.PodSandboxStatsResponse(stats=(await self._pods_stats([sandbox]))[0])

    async def list_pod_sandbox_stats(
        self, request: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse:
        await self.containers.refresh_all()
        wanted = request.filter
        sandboxes = [
            s
            for s in list(self.ctx.store.sandboxes.values())
            if s.id in self.ctx.sandbox_ids
            and s.ready
            and (not wanted.id or s.id == wanted.id)
            and _selected(s.config.labels, wanted.label_selector)
        ]
        if not wanted.id and not wanted.label_selector:
            self._forget_others()
        return cri.ListPodSandboxStatsResponse(stats=await self._pods_stats(sandboxes))

    async def _pods_stats(self, sandboxes: list[SandboxRecord]) -> list[cri.PodSandboxStats]:
        members = {s.id: self._containers_of(s.id) for s in sandboxes}
        ids = [s.id for s in sandboxes] + [c.id for s in sandboxes for c in members[s.id]]
        facts = {s.id: (s.pid, s.docker_state in RUNNING_STATES) for s in sandboxes} | {
            c.id: (c.pid, _running(c)) for s in sandboxes for c in members[s.id]
        }
        found = await asyncio.gather(*(self._target(i, *facts[i]) for i in ids))
        targets = dict(zip(ids, found, strict=True))
        jobs = [(s, [(c.id, targets[c.id], _running(c)) for c in members[s.id]]) for s in sandboxes]
        readings = await asyncio.to_thread(self._sample_pods, jobs, targets)
        return list(
            await asyncio.gather(
                *(
                    self._pod_stats(s, members[s.id], targets, reading)
                    for s, reading in zip(sandboxes, readings, strict=True)
                )
            )
        )

    async def _pod_stats(
        self,
        sandbox: SandboxRecord,
        containers: list[ContainerRecord],
        targets: dict[str, Target | None],
        reading: _PodReading,
    ) -> cri.PodSandboxStats:
        linux = cri.LinuxPodSandboxStats()
        linux.containers.extend(
            await asyncio.gather(
                *(
                    self._container_stats(r, targets.get(r.id), reading.containers.get(r.id))
                    for r in containers
                )
            )
        )
        total = reading.pod
        if total is None and reading.pause is not None:
            total = sum_samples(
                [reading.pause, *(s for s in reading.containers.values() if s is not None)]
            )
        if total is not None:
            if (cpu := self._cpu(sandbox.id, total)) is not None:
                linux.cpu.CopyFrom(cpu)
            if (memory := memory_usage(total)) is not None:
                linux.memory.CopyFrom(memory)
            if total.pids is not None:
                linux.process.CopyFrom(
                    cri.ProcessUsage(timestamp=total.timestamp, process_count=_u64(total.pids))
                )
        if reading.network is not None:
            linux.network.CopyFrom(network_usage(reading.network, reading.network_timestamp))
        return cri.PodSandboxStats(attributes=sandbox_attributes(sandbox), linux=linux)

    def _sample_pods(
        self,
        jobs: list[tuple[SandboxRecord, list[tuple[str, Target | None, bool]]]],
        targets: dict[str, Target | None],
    ) -> list[_PodReading]:
        """Read every pod's cgroups and network (in a worker thread)."""
        readings = []
        for sandbox, container_jobs in jobs:
            pause_target = targets.get(sandbox.id)
            running = sandbox.docker_state in RUNNING_STATES
            pause = self._sample([(sandbox.id, pause_target, running)]).get(sandbox.id)
            reading = _PodReading(pause=pause, containers=self._sample(container_jobs))
            cgroups = pause_target.cgroups if pause_target else None
            if (
                pause is not None
                and cgroups is not None
                and sandbox.config.linux.cgroup_parent
                and is_dedicated_parent(cgroups, [sandbox.id, *(c for c, _, _ in container_jobs)])
            ):
                reading.pod = cgroups.parent().read()
            if running and sandbox.network.mode != "host" and pause_target and pause_target.pid:
                text = _read(Path(f"/proc/{pause_target.pid}/net/dev"))
                reading.network = parse_net_dev(text) if text is not None else None
                reading.network_timestamp = time.time_ns()
            readings.append(reading)
        return readings

    # Shared parts.

    def _sample(
        self, jobs: list[tuple[str, Target | None, bool]]
    ) -> dict[str, CgroupSample | None]:
        """Read the cgroups of the running ones among ``jobs`` (in a worker thread)."""
        samples: dict[str, CgroupSample | None] = {}
        for docker_id, target, running in jobs:
            samples[docker_id] = None
            if target is None or not running:
                continue
            if target.cgroups is None and target.pid:
                target.cgroups = locate_process(self.hierarchy, target.pid, docker_id)
            if target.cgroups is None:
                continue
            sample = target.cgroups.read()
            if sample.cpu_ns is not None or sample.memory is not None:
                samples[docker_id] = sample
        return samples

    @property
    def hierarchy(self) -> Hierarchy:
        if self._hierarchy is None:
            self._hierarchy = Hierarchy.parse(_read(Path("/proc/self/mountinfo")) or "")
        return self._hierarchy

    async def _target(
        self, docker_id: str, pid: int, running: bool, strict: bool = False
    ) -> Target | None:
        """The container's layer and process, inspected the first time only.

        Inspected again only for a running container whose process is not
        known yet (started behind pycrid's back). None when Docker cannot say
        (the container is then listed without figures); with ``strict``, a
        container Docker lost is NOT_FOUND.
        """
        target = self._targets.get(docker_id)
        if target is None or (running and not pid and not target.pid and not target.cgroups):
            try:
                inspect = await self.ctx.client.call("inspect_container", docker_id)
            except NotFound:
                if strict:
                    raise NotFound(f"container {docker_id!r} not found") from None
                return None
            except CRIError as e:
                if strict:
                    raise
                log.debug("stats: inspecting %s failed: %s", docker_id[:13], e)
                return None
            data = (inspect.get("GraphDriver") or {}).get("Data") or {}
            target = Target(
                upper_dir=data.get("UpperDir") or "",
                pid=(inspect.get("State") or {}).get("Pid") or 0,
            )
            self._targets[docker_id] = target
        if pid and pid != target.pid:
            target.pid = pid
            target.cgroups = None
        return target

    def _container(self, container_id: str) -> ContainerRecord:
        record = self.ctx.store.container(container_id)
        if record.id not in self.ctx.container_ids:
            raise NotFound(f"container {container_id!r} not found")  # still being created
        return record

    def _known_containers(self) -> list[ContainerRecord]:
        ids = self.ctx.container_ids
        return [r for r in list(self.ctx.store.containers.values()) if r.id in ids]

    def _containers_of(self, sandbox_id: str) -> list[ContainerRecord]:
        ids = self.ctx.container_ids
        return [r for r in self.ctx.store.containers_of(sandbox_id) if r.id in ids]

    def _forget_others(self) -> None:
        """Drop what is kept of containers and pods that are gone."""
        alive = set(self.ctx.store.containers) | set(self.ctx.store.sandboxes)
        for docker_id in [i for i in self._targets if i not in alive]:
            del self._targets[docker_id]
        self.rates.keep_only(alive)
        self.layers.keep_only(alive)


def _running(record: ContainerRecord) -> bool:
    return record.state == cri.CONTAINER_RUNNING
