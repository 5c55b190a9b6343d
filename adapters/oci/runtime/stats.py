"""Container and pod stats on the oci runtime, from the cgroup and proc files.

A running container's cgroup is found through its process (the same readers
the docker adapter uses); its writable layer is the overlay's upper
directory, measured in the background. A pod's figures are its pause
process and containers added up, its network the pause's interfaces.
"""

from __future__ import annotations

import asyncio
import time

from pycrid.adapters import criviews
from pycrid.adapters.errors import NotFound
from pycrid.adapters.listfilter import admits_stats, selects_all
from pycrid.adapters.node.cgroups import (
    CgroupPaths,
    CgroupSample,
    Hierarchy,
    host_hierarchy,
    locate_process,
    sum_samples,
)
from pycrid.adapters.node.cpurates import CpuRates
from pycrid.adapters.node.criusage import cpu_usage, memory_usage, network_usage, process_usage, u64
from pycrid.adapters.node.layersize import LayerSizes
from pycrid.adapters.node.procnet import read_net_dev
from pycrid.adapters.oci.runtime.containers import OciContainers
from pycrid.adapters.oci.runtime.store import ContainerRecord, SandboxRecord
from pycrid.api.cri import api_pb2 as cri


class OciStats:
    """ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats."""

    def __init__(self, containers: OciContainers) -> None:
        self.containers = containers
        self.ctx = containers.ctx
        self.layers = LayerSizes()
        self.rates = CpuRates()
        self._cgroups: dict[str, CgroupPaths] = {}
        self._hierarchy: Hierarchy | None = None

    def close(self) -> None:
        self.layers.close()

    @property
    def hierarchy(self) -> Hierarchy:
        if self._hierarchy is None:
            self._hierarchy = host_hierarchy()
        return self._hierarchy

    def _sample(self, object_id: str, pid: int, running: bool) -> CgroupSample | None:
        """The cgroup figures of a running process (in a worker thread)."""
        if not running or pid <= 0:
            return None
        paths = self._cgroups.get(object_id)
        if paths is None:
            paths = locate_process(self.hierarchy, pid, object_id)
            if paths is None:
                return None
            self._cgroups[object_id] = paths
        sample = paths.read()
        return sample if sample.cpu_ns is not None or sample.memory is not None else None

    def _cpu(self, key: str, sample: CgroupSample) -> cri.CpuUsage | None:
        if sample.cpu_ns is None:
            return None
        return cpu_usage(sample, self.rates.rate(key, sample.timestamp, sample.cpu_ns))

    async def _container_stats(
        self, record: ContainerRecord, sample: CgroupSample | None
    ) -> cri.ContainerStats:
        stats = cri.ContainerStats(attributes=criviews.container_attributes(record))
        if sample is not None:
            if (cpu := self._cpu(record.id, sample)) is not None:
                stats.cpu.CopyFrom(cpu)
            if (memory := memory_usage(sample)) is not None:
                stats.memory.CopyFrom(memory)
        upper = self.ctx.store.container_dir(record.id) / "fs" / "upper"
        measured = await self.layers.get(record.id, str(upper))
        layer = cri.FilesystemUsage(
            timestamp=measured.timestamp if measured else time.time_ns(),
            fs_id=cri.FilesystemIdentifier(mountpoint=str(self.ctx.store.root)),
        )
        if measured is not None:
            layer.used_bytes.CopyFrom(u64(measured.usage.used_bytes))
            layer.inodes_used.CopyFrom(u64(measured.usage.inodes))
        stats.writable_layer.CopyFrom(layer)
        return stats

    async def _many(self, records: list[ContainerRecord]) -> list[cri.ContainerStats]:
        for record in records:
            await self.containers.refresh(record)
        jobs = [(r.id, r.pid, r.state == cri.CONTAINER_RUNNING) for r in records]
        samples = await asyncio.to_thread(lambda: [self._sample(*job) for job in jobs])
        return [await self._container_stats(r, s) for r, s in zip(records, samples, strict=True)]

    def _known(self) -> list[ContainerRecord]:
        ids = self.ctx.store.container_ids
        return [r for r in list(self.ctx.store.containers.values()) if r.id in ids]

    # Containers.

    async def container_stats(
        self, request: cri.ContainerStatsRequest
    ) -> cri.ContainerStatsResponse:
        record = self.ctx.store.container(request.container_id)
        if record.id not in self.ctx.store.container_ids:
            raise NotFound(f"container {request.container_id[:13]} not found")
        return cri.ContainerStatsResponse(stats=(await self._many([record]))[0])

    async def list_container_stats(
        self, request: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        wanted = request.filter
        records = [
            r for r in self._known() if admits_stats(wanted, r.id, r.config.labels, r.sandbox_id)
        ]
        if selects_all(wanted):
            self._forget_others()
        return cri.ListContainerStatsResponse(stats=await self._many(records))

    # Pods.

    async def pod_sandbox_stats(
        self, request: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse:
        sandbox = self.ctx.store.sandbox(request.pod_sandbox_id)
        if sandbox.id not in self.ctx.store.sandbox_ids:
            raise NotFound(f"pod sandbox {request.pod_sandbox_id[:13]} not found")
        return cri.PodSandboxStatsResponse(stats=await self._pod(sandbox))

    async def list_pod_sandbox_stats(
        self, request: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse:
        wanted = request.filter
        sandboxes = [
            s
            for s in list(self.ctx.store.sandboxes.values())
            if s.id in self.ctx.store.sandbox_ids
            and s.ready
            and admits_stats(wanted, s.id, s.config.labels)
        ]
        return cri.ListPodSandboxStatsResponse(stats=[await self._pod(s) for s in sandboxes])

    async def _pod(self, sandbox: SandboxRecord) -> cri.PodSandboxStats:
        members = [r for r in self._known() if r.sandbox_id == sandbox.id]
        container_stats = await self._many(members)
        samples = await asyncio.to_thread(
            lambda: [
                self._sample(sandbox.id, sandbox.pid, sandbox.ready),
                *(self._sample(r.id, r.pid, r.state == cri.CONTAINER_RUNNING) for r in members),
            ]
        )
        linux = cri.LinuxPodSandboxStats()
        linux.containers.extend(container_stats)
        present = [s for s in samples if s is not None]
        if present:
            total = sum_samples(present)
            if (cpu := self._cpu(sandbox.id, total)) is not None:
                linux.cpu.CopyFrom(cpu)
            if (memory := memory_usage(total)) is not None:
                linux.memory.CopyFrom(memory)
            if (process := process_usage(total)) is not None:
                linux.process.CopyFrom(process)
        if sandbox.ready and sandbox.network.mode != "host" and sandbox.pid > 0:
            interfaces = await asyncio.to_thread(read_net_dev, sandbox.pid)
            if interfaces is not None:
                linux.network.CopyFrom(network_usage(interfaces, time.time_ns()))
        return cri.PodSandboxStats(attributes=criviews.pod_attributes(sandbox), linux=linux)

    def _forget_others(self) -> None:
        alive = set(self.ctx.store.containers) | set(self.ctx.store.sandboxes)
        for object_id in [i for i in self._cgroups if i not in alive]:
            del self._cgroups[object_id]
        self.rates.keep_only(alive)
        self.layers.keep_only(alive)
