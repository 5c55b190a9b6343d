"""ListMetricDescriptors and ListPodSandboxMetrics, the same for every adapter.

An adapter tells which pods are up and which processes stand for them
(``PodProcesses``); the cgroup of each process is found and read the way the
stats calls do it, the pod's network through its pause process, and each
container's writable layer from the adapter's own ContainerStats (which
measures it in the background). A pod's own figures are its pause process
and its containers added up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pycrid.adapters.base import Stats
from pycrid.adapters.node import cadvisor
from pycrid.adapters.node.cgroups import (
    CgroupPaths,
    CgroupSample,
    Hierarchy,
    host_hierarchy,
    locate_process,
    sum_samples,
)
from pycrid.adapters.node.procnet import read_net_dev
from pycrid.adapters.records import RecordStore
from pycrid.api.cri import api_pb2 as cri


@dataclass
class PodProcesses:
    """A ready pod: its pause process, and its running containers' main processes."""

    sandbox_id: str
    pause_pid: int
    own_network: bool
    containers: dict[str, int] = field(default_factory=dict)
    """Container ID: PID."""


def pod_processes(store: RecordStore) -> list[PodProcesses]:
    """The published, ready pods of an adapter's store, with their running containers."""
    return [
        PodProcesses(
            sandbox_id=sandbox.id,
            pause_pid=sandbox.pid,
            own_network=sandbox.network.mode != "host",
            containers={
                c.id: c.pid
                for c in store.containers_of(sandbox.id)
                if c.id in store.container_ids and c.state == cri.CONTAINER_RUNNING
            },
        )
        for sandbox in list(store.sandboxes.values())
        if sandbox.id in store.sandbox_ids and sandbox.ready
    ]


@dataclass
class _Reading:
    pause: CgroupSample | None
    containers: dict[str, CgroupSample | None]
    network: list | None


class PodMetrics:
    """The adapters' ``metrics`` concern."""

    def __init__(self, pods: Callable[[], list[PodProcesses]], stats: Stats) -> None:
        self.pods = pods
        self.stats = stats
        self._cgroups: dict[tuple[str, int], CgroupPaths] = {}
        self._hierarchy: Hierarchy | None = None

    async def list_metric_descriptors(
        self, request: cri.ListMetricDescriptorsRequest
    ) -> cri.ListMetricDescriptorsResponse:
        return cri.ListMetricDescriptorsResponse(descriptors=cadvisor.descriptors())

    async def list_pod_sandbox_metrics(
        self, request: cri.ListPodSandboxMetricsRequest
    ) -> cri.ListPodSandboxMetricsResponse:
        pods = self.pods()
        readings = await asyncio.to_thread(lambda: [self._read(pod) for pod in pods])
        layers = await self._layers()
        self._keep_only(pods)
        return cri.ListPodSandboxMetricsResponse(
            pod_metrics=[
                self._pod_metrics(pod, reading, layers)
                for pod, reading in zip(pods, readings, strict=True)
            ]
        )

    def _pod_metrics(
        self, pod: PodProcesses, reading: _Reading, layers: dict[str, tuple[int, str]]
    ) -> cri.PodSandboxMetrics:
        now = time.time_ns()
        result = cri.PodSandboxMetrics(pod_sandbox_id=pod.sandbox_id)
        present = [s for s in (reading.pause, *reading.containers.values()) if s is not None]
        if present:
            result.metrics.extend(cadvisor.cgroup_metrics(sum_samples(present)))
        if reading.network is not None:
            result.metrics.extend(cadvisor.network_metrics(reading.network, now))
        for container_id, sample in reading.containers.items():
            container = cri.ContainerMetrics(container_id=container_id)
            if sample is not None:
                container.metrics.extend(cadvisor.cgroup_metrics(sample))
            if container_id in layers:
                used, device = layers[container_id]
                container.metrics.extend(cadvisor.fs_metrics(used, device, now))
            result.container_metrics.append(container)
        return result

    async def _layers(self) -> dict[str, tuple[int, str]]:
        """Each container's writable layer: bytes used, and the filesystem's mount point."""
        listed = await self.stats.list_container_stats(cri.ListContainerStatsRequest())
        return {
            s.attributes.id: (
                s.writable_layer.used_bytes.value,
                s.writable_layer.fs_id.mountpoint,
            )
            for s in listed.stats
            if s.writable_layer.HasField("used_bytes")
        }

    # Readings, in a worker thread.

    @property
    def hierarchy(self) -> Hierarchy:
        if self._hierarchy is None:
            self._hierarchy = host_hierarchy()
        return self._hierarchy

    def _sample(self, object_id: str, pid: int) -> CgroupSample | None:
        if pid <= 0:
            return None
        paths = self._cgroups.get((object_id, pid))
        if paths is None:
            paths = locate_process(self.hierarchy, pid, object_id)
            if paths is None:
                return None
            self._cgroups[(object_id, pid)] = paths
        sample = paths.read()
        return sample if sample.cpu_ns is not None or sample.memory is not None else None

    def _read(self, pod: PodProcesses) -> _Reading:
        return _Reading(
            pause=self._sample(pod.sandbox_id, pod.pause_pid),
            containers={cid: self._sample(cid, pid) for cid, pid in pod.containers.items()},
            network=read_net_dev(pod.pause_pid) if pod.own_network and pod.pause_pid > 0 else None,
        )

    def _keep_only(self, pods: list[PodProcesses]) -> None:
        alive = {(p.sandbox_id, p.pause_pid) for p in pods} | {
            item for p in pods for item in p.containers.items()
        }
        for key in [k for k in self._cgroups if k not in alive]:
            del self._cgroups[key]
