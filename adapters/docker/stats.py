"""Container and pod stats, read from the kernel rather than from Docker.

Docker's stats API samples each container for about a second, and asking it
for every container on every kubelet housekeeping round is what makes
cri-dockerd hammer dockerd. Here each container is inspected once (for the
process that locates its cgroup, and its writable layer) and after that its
figures come straight from the cgroup files (``pycrid.adapters.node.cgroups``). A
pod's figures come from its own cgroup when kubelet gave it one
(``cgroup_parent``) and it holds only the pod's containers, else they are the
sum of its containers'; its network figures are those of the pause
container's network namespace (``pycrid.adapters.node.procnet``).

The writable layer's size is measured by walking its overlay upper
directory (``layersize``): a stats call never waits for a walk longer than a
moment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field

from pycrid.adapters import criviews
from pycrid.adapters.docker.containers import DockerContainers
from pycrid.adapters.docker.context import DockerContext
from pycrid.adapters.docker.store import RUNNING_STATES, ContainerRecord, SandboxRecord
from pycrid.adapters.errors import CRIError, NotFound
from pycrid.adapters.listfilter import admits_stats, selects_all
from pycrid.adapters.node.cgroups import (
    CgroupPaths,
    CgroupSample,
    Hierarchy,
    host_hierarchy,
    is_dedicated_parent,
    locate_process,
    sum_samples,
)
from pycrid.adapters.node.cpurates import CpuRates
from pycrid.adapters.node.criusage import cpu_usage, memory_usage, network_usage, process_usage, u64
from pycrid.adapters.node.layersize import LayerSizes, MeasuredLayer
from pycrid.adapters.node.procnet import InterfaceSample, read_net_dev
from pycrid.api.cri import api_pb2 as cri

log = logging.getLogger("pycrid.docker")


# Building the CRI messages.


def writable_layer(upper_dir: str, measured: MeasuredLayer | None) -> cri.FilesystemUsage:
    """The layer's usage on Docker's storage-driver directory (as ImageFsInfo names it)."""
    mountpoint = os.path.dirname(os.path.dirname(upper_dir.rstrip("/")))
    layer = cri.FilesystemUsage(
        timestamp=measured.timestamp if measured else time.time_ns(),
        fs_id=cri.FilesystemIdentifier(mountpoint=mountpoint),
    )
    if measured is not None:
        layer.used_bytes.CopyFrom(u64(measured.usage.used_bytes))
        layer.inodes_used.CopyFrom(u64(measured.usage.inodes))
    return layer


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
            if admits_stats(wanted, r.id, r.config.labels, r.sandbox_id)
        ]
        if selects_all(wanted):
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
        stats = cri.ContainerStats(attributes=criviews.container_attributes(record))
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
        if sandbox.id not in self.ctx.store.sandbox_ids:
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
            if s.id in self.ctx.store.sandbox_ids
            and s.ready
            and admits_stats(wanted, s.id, s.config.labels)
        ]
        if selects_all(wanted):
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
            if (process := process_usage(total)) is not None:
                linux.process.CopyFrom(process)
        if reading.network is not None:
            linux.network.CopyFrom(network_usage(reading.network, reading.network_timestamp))
        return cri.PodSandboxStats(attributes=criviews.pod_attributes(sandbox), linux=linux)

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
                reading.network = read_net_dev(pause_target.pid)
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
            self._hierarchy = host_hierarchy()
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
                inspect = await self.ctx.client.inspect_container(docker_id)
            except NotFound:
                if strict:
                    raise NotFound(f"container {docker_id!r} not found") from None
                return None
            except CRIError as e:
                if strict:
                    raise
                log.debug("stats: inspecting %s failed: %s", docker_id[:13], e)
                return None
            data = inspect.get("GraphDriver", {}).get("Data") or {}
            target = Target(
                upper_dir=data.get("UpperDir") or "",
                pid=inspect.get("State", {}).get("Pid") or 0,
            )
            self._targets[docker_id] = target
        if pid and pid != target.pid:
            target.pid = pid
            target.cgroups = None
        return target

    def _container(self, container_id: str) -> ContainerRecord:
        record = self.ctx.store.container(container_id)
        if record.id not in self.ctx.store.container_ids:
            raise NotFound(f"container {container_id!r} not found")  # still being created
        return record

    def _known_containers(self) -> list[ContainerRecord]:
        ids = self.ctx.store.container_ids
        return [r for r in list(self.ctx.store.containers.values()) if r.id in ids]

    def _containers_of(self, sandbox_id: str) -> list[ContainerRecord]:
        ids = self.ctx.store.container_ids
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
