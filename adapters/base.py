"""The seam between pycrid's server and its backends.

An adapter is a set of *concerns*: small Protocols whose methods are named
after the RPCs they serve (``run_pod_sandbox`` serves RunPodSandbox), take the
CRI request message and return the CRI response message; the messages are the
domain model. A servicer reaches the object that does the work in one hop:
``adapter.sandboxes.run_pod_sandbox(request)``.

A concern an adapter does not have is ``None``, and the server answers its
RPCs UNIMPLEMENTED; that is the only way to say "not supported". The server
has already validated the request and resolved ID prefixes to full IDs
(through ``sandbox_ids`` and ``container_ids``), so adapters see full IDs
only. Adapters raise the exceptions of ``pycrid.adapters.errors``, nothing
else.

The dependency runs one way: the server imports this package, never
the reverse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from pycrid.adapters.idindex import IdIndex
from pycrid.adapters.streaming import Streaming
from pycrid.adapters.version import PYCRID_VERSION
from pycrid.api.cri import api_pb2 as cri

__all__ = [
    "Adapter",
    "Checkpoints",
    "Containers",
    "Events",
    "Images",
    "Metrics",
    "PodResources",
    "PodSandboxes",
    "RuntimeInfo",
    "StartupError",
    "Stats",
    "Streaming",
]


class StartupError(Exception):
    """The adapter cannot start; the message is shown to the user as is."""


class RuntimeInfo(Protocol):
    """Status, RuntimeConfig and UpdateRuntimeConfig (Version is the server's)."""

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse: ...

    async def runtime_config(
        self, request: cri.RuntimeConfigRequest
    ) -> cri.RuntimeConfigResponse: ...

    async def update_runtime_config(
        self, request: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse: ...


class PodSandboxes(Protocol):
    """The pod sandbox lifecycle. Stop and Remove of a missing pod never reach here."""

    async def run_pod_sandbox(
        self, request: cri.RunPodSandboxRequest
    ) -> cri.RunPodSandboxResponse: ...

    async def stop_pod_sandbox(
        self, request: cri.StopPodSandboxRequest
    ) -> cri.StopPodSandboxResponse: ...

    async def remove_pod_sandbox(
        self, request: cri.RemovePodSandboxRequest
    ) -> cri.RemovePodSandboxResponse: ...

    async def pod_sandbox_status(
        self, request: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse: ...

    async def list_pod_sandbox(
        self, request: cri.ListPodSandboxRequest
    ) -> cri.ListPodSandboxResponse: ...


class PodResources(Protocol):
    """UpdatePodSandboxResources."""

    async def update_pod_sandbox_resources(
        self, request: cri.UpdatePodSandboxResourcesRequest
    ) -> cri.UpdatePodSandboxResourcesResponse: ...


class Containers(Protocol):
    """The container lifecycle, its log and ExecSync."""

    async def create_container(
        self, request: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse: ...

    async def start_container(
        self, request: cri.StartContainerRequest
    ) -> cri.StartContainerResponse: ...

    async def stop_container(
        self, request: cri.StopContainerRequest
    ) -> cri.StopContainerResponse: ...

    async def remove_container(
        self, request: cri.RemoveContainerRequest
    ) -> cri.RemoveContainerResponse: ...

    async def list_containers(
        self, request: cri.ListContainersRequest
    ) -> cri.ListContainersResponse: ...

    async def container_status(
        self, request: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse: ...

    async def update_container_resources(
        self, request: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse: ...

    async def reopen_container_log(
        self, request: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse: ...

    async def exec_sync(self, request: cri.ExecSyncRequest) -> cri.ExecSyncResponse: ...


class Checkpoints(Protocol):
    """CheckpointContainer."""

    async def checkpoint_container(
        self, request: cri.CheckpointContainerRequest
    ) -> cri.CheckpointContainerResponse: ...


class Images(Protocol):
    """The ImageService."""

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse: ...

    async def image_status(self, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse: ...

    async def pull_image(self, request: cri.PullImageRequest) -> cri.PullImageResponse: ...

    async def remove_image(self, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse: ...

    async def image_fs_info(self, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse: ...


class Stats(Protocol):
    """Container and pod resource usage."""

    async def container_stats(
        self, request: cri.ContainerStatsRequest
    ) -> cri.ContainerStatsResponse: ...

    async def list_container_stats(
        self, request: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse: ...

    async def pod_sandbox_stats(
        self, request: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse: ...

    async def list_pod_sandbox_stats(
        self, request: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse: ...


class Metrics(Protocol):
    """The cAdvisor-style pod metrics of ListMetricDescriptors and ListPodSandboxMetrics."""

    async def list_metric_descriptors(
        self, request: cri.ListMetricDescriptorsRequest
    ) -> cri.ListMetricDescriptorsResponse: ...

    async def list_pod_sandbox_metrics(
        self, request: cri.ListPodSandboxMetricsRequest
    ) -> cri.ListPodSandboxMetricsResponse: ...


class Events(Protocol):
    """GetContainerEvents: container lifecycle events as they happen."""

    def get_container_events(
        self, request: cri.GetEventsRequest
    ) -> AsyncIterator[cri.ContainerEventResponse]: ...


@dataclass
class Adapter:
    """One backend, as the daemon serves it: its concerns, ``None`` where it has none.

    ``start`` connects to the backend and recovers state (raising
    ``StartupError`` when it cannot); ``close`` releases what ``start``
    acquired, and containers keep running.
    """

    name: str
    runtime: RuntimeInfo
    sandbox_ids: IdIndex = field(default_factory=lambda: IdIndex("pod sandbox"))
    container_ids: IdIndex = field(default_factory=lambda: IdIndex("container"))
    sandboxes: PodSandboxes | None = None
    pod_resources: PodResources | None = None
    containers: Containers | None = None
    checkpoints: Checkpoints | None = None
    images: Images | None = None
    streaming: Streaming | None = None
    stats: Stats | None = None
    metrics: Metrics | None = None
    events: Events | None = None
    runtime_version: str = PYCRID_VERSION

    async def start(self) -> None:
        """Connect to the backend and recover state (adapters override)."""

    async def close(self) -> None:
        """Release what ``start`` acquired (adapters override)."""
