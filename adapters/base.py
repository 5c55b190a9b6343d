"""The seam between pycrid's server and its backends.

An adapter takes CRI request messages and returns CRI response messages; the
messages are the domain model. The server has already validated the request
and resolved ID prefixes to full IDs (through ``sandbox_ids`` and
``container_ids``) before a method is called, so adapters see full IDs only.

Every method has a default that raises ``Unimplemented``: an adapter overrides
what its backend supports, and the server answers UNIMPLEMENTED for the rest.
Adapters raise the exceptions of ``pycrid.server.errors``, nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

from pycrid.api.cri import api_pb2 as cri
from pycrid.server.config import Config
from pycrid.server.errors import Unimplemented
from pycrid.server.idindex import IdIndex
from pycrid.server.version import (
    KUBELET_API_VERSION,
    PYCRID_VERSION,
    RUNTIME_API_VERSION,
    RUNTIME_NAME,
)

if TYPE_CHECKING:
    from pycrid.server.streaming.server import StreamingServer


def _unimplemented(call: str) -> Unimplemented:
    return Unimplemented(f"{call} is not supported by this adapter")


class Adapter:
    """Base class of every backend; see the module docstring."""

    name = "base"
    runtime_version = PYCRID_VERSION

    def __init__(self, config: Config) -> None:
        self.config = config
        self.sandbox_ids = IdIndex("pod sandbox")
        self.container_ids = IdIndex("container")
        self.streaming: StreamingServer | None = None

    # Lifecycle of the adapter itself.

    async def start(self) -> None:
        """Connect to the backend and recover state; raise StartupError on failure."""

    async def close(self) -> None:
        """Release what ``start`` acquired; containers keep running."""

    # Runtime information.

    async def version(self, request: cri.VersionRequest) -> cri.VersionResponse:
        return cri.VersionResponse(
            version=KUBELET_API_VERSION,
            runtime_name=RUNTIME_NAME,
            runtime_version=PYCRID_VERSION,
            runtime_api_version=RUNTIME_API_VERSION,
        )

    async def status(self, request: cri.StatusRequest) -> cri.StatusResponse:
        raise _unimplemented("Status")

    async def runtime_config(self, request: cri.RuntimeConfigRequest) -> cri.RuntimeConfigResponse:
        raise _unimplemented("RuntimeConfig")

    async def update_runtime_config(
        self, request: cri.UpdateRuntimeConfigRequest
    ) -> cri.UpdateRuntimeConfigResponse:
        raise _unimplemented("UpdateRuntimeConfig")

    # Pod sandboxes.

    async def run_pod_sandbox(self, request: cri.RunPodSandboxRequest) -> cri.RunPodSandboxResponse:
        raise _unimplemented("RunPodSandbox")

    async def stop_pod_sandbox(
        self, request: cri.StopPodSandboxRequest
    ) -> cri.StopPodSandboxResponse:
        raise _unimplemented("StopPodSandbox")

    async def remove_pod_sandbox(
        self, request: cri.RemovePodSandboxRequest
    ) -> cri.RemovePodSandboxResponse:
        raise _unimplemented("RemovePodSandbox")

    async def pod_sandbox_status(
        self, request: cri.PodSandboxStatusRequest
    ) -> cri.PodSandboxStatusResponse:
        raise _unimplemented("PodSandboxStatus")

    async def list_pod_sandbox(
        self, request: cri.ListPodSandboxRequest
    ) -> cri.ListPodSandboxResponse:
        raise _unimplemented("ListPodSandbox")

    async def update_pod_sandbox_resources(
        self, request: cri.UpdatePodSandboxResourcesRequest
    ) -> cri.UpdatePodSandboxResourcesResponse:
        raise _unimplemented("UpdatePodSandboxResources")

    # Containers.

    async def create_container(
        self, request: cri.CreateContainerRequest
    ) -> cri.CreateContainerResponse:
        raise _unimplemented("CreateContainer")

    async def start_container(
        self, request: cri.StartContainerRequest
    ) -> cri.StartContainerResponse:
        raise _unimplemented("StartContainer")

    async def stop_container(self, request: cri.StopContainerRequest) -> cri.StopContainerResponse:
        raise _unimplemented("StopContainer")

    async def remove_container(
        self, request: cri.RemoveContainerRequest
    ) -> cri.RemoveContainerResponse:
        raise _unimplemented("RemoveContainer")

    async def list_containers(
        self, request: cri.ListContainersRequest
    ) -> cri.ListContainersResponse:
        raise _unimplemented("ListContainers")

    async def container_status(
        self, request: cri.ContainerStatusRequest
    ) -> cri.ContainerStatusResponse:
        raise _unimplemented("ContainerStatus")

    async def update_container_resources(
        self, request: cri.UpdateContainerResourcesRequest
    ) -> cri.UpdateContainerResourcesResponse:
        raise _unimplemented("UpdateContainerResources")

    async def reopen_container_log(
        self, request: cri.ReopenContainerLogRequest
    ) -> cri.ReopenContainerLogResponse:
        raise _unimplemented("ReopenContainerLog")

    async def exec_sync(self, request: cri.ExecSyncRequest) -> cri.ExecSyncResponse:
        raise _unimplemented("ExecSync")

    async def checkpoint_container(
        self, request: cri.CheckpointContainerRequest
    ) -> cri.CheckpointContainerResponse:
        raise _unimplemented("CheckpointContainer")

    # Streaming. The adapter returns the URL of a session it prepared with the
    # streaming server (see pycrid.server.streaming).

    def attach_streaming(self, server: StreamingServer) -> None:
        """Use ``server`` for Exec, Attach and PortForward sessions (the daemon calls this)."""
        self.streaming = server

    async def exec(self, request: cri.ExecRequest) -> cri.ExecResponse:
        raise _unimplemented("Exec")

    async def attach(self, request: cri.AttachRequest) -> cri.AttachResponse:
        raise _unimplemented("Attach")

    async def port_forward(self, request: cri.PortForwardRequest) -> cri.PortForwardResponse:
        raise _unimplemented("PortForward")

    # Stats and metrics.

    async def container_stats(
        self, request: cri.ContainerStatsRequest
    ) -> cri.ContainerStatsResponse:
        raise _unimplemented("ContainerStats")

    async def list_container_stats(
        self, request: cri.ListContainerStatsRequest
    ) -> cri.ListContainerStatsResponse:
        raise _unimplemented("ListContainerStats")

    async def pod_sandbox_stats(
        self, request: cri.PodSandboxStatsRequest
    ) -> cri.PodSandboxStatsResponse:
        raise _unimplemented("PodSandboxStats")

    async def list_pod_sandbox_stats(
        self, request: cri.ListPodSandboxStatsRequest
    ) -> cri.ListPodSandboxStatsResponse:
        raise _unimplemented("ListPodSandboxStats")

    async def list_metric_descriptors(
        self, request: cri.ListMetricDescriptorsRequest
    ) -> cri.ListMetricDescriptorsResponse:
        raise _unimplemented("ListMetricDescriptors")

    async def list_pod_sandbox_metrics(
        self, request: cri.ListPodSandboxMetricsRequest
    ) -> cri.ListPodSandboxMetricsResponse:
        raise _unimplemented("ListPodSandboxMetrics")

    async def container_events(
        self, request: cri.GetEventsRequest
    ) -> AsyncIterator[cri.ContainerEventResponse]:
        raise _unimplemented("GetContainerEvents")
        yield  # an async generator, for the server's stream handler

    # Images.

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
        raise _unimplemented("ListImages")

    async def image_status(self, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        raise _unimplemented("ImageStatus")

    async def pull_image(self, request: cri.PullImageRequest) -> cri.PullImageResponse:
        raise _unimplemented("PullImage")

    async def remove_image(self, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        raise _unimplemented("RemoveImage")

    async def image_fs_info(self, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        raise _unimplemented("ImageFsInfo")


class ImageBackend(Protocol):
    """An ImageService of its own: one method per RPC, as ``ImageBackedAdapter`` calls them."""

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse: ...

    async def status(self, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse: ...

    async def pull(self, request: cri.PullImageRequest) -> cri.PullImageResponse: ...

    async def remove(self, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse: ...

    async def fs_info(self, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse: ...


class ImageBackedAdapter(Adapter):
    """An adapter whose ImageService calls all go to one object, ``images``."""

    images: ImageBackend

    async def list_images(self, request: cri.ListImagesRequest) -> cri.ListImagesResponse:
        return await self.images.list_images(request)

    async def image_status(self, request: cri.ImageStatusRequest) -> cri.ImageStatusResponse:
        return await self.images.status(request)

    async def pull_image(self, request: cri.PullImageRequest) -> cri.PullImageResponse:
        return await self.images.pull(request)

    async def remove_image(self, request: cri.RemoveImageRequest) -> cri.RemoveImageResponse:
        return await self.images.remove(request)

    async def image_fs_info(self, request: cri.ImageFsInfoRequest) -> cri.ImageFsInfoResponse:
        return await self.images.fs_info(request)


class StartupError(Exception):
    """The adapter cannot start; the message is shown to the user as is."""
